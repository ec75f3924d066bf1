"""Start-up cost: seconds to import what a command needs, each in a fresh interpreter, medians side by side.

    python -m benchmarks.startup [--runs 7] [--against OTHER_SRC]

Each probe runs in its own process (`python -c ...`), the probes and the source trees taking turns
run after run, so that a change in the machine's load falls on all of them alike; printed: the
median and the range of each. With --against, the same probes also run with another checkout's
src/ first on the path (say, the commit before a change), each figure beside this tree's.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.train_speed import hardware, load_average

SRC = Path(__file__).resolve().parents[1] / "src"
PROBES = {
    "import torch (the floor)": "import torch",
    "import lenet.cli": "import lenet.cli",
    "lenet train's imports (parser, data, loop)": (
        "import lenet.cli; lenet.cli.build_parser(); import lenet.data.load, lenet.training.loop, lenet.training.seeds"
    ),
    "import lenet (the public API)": "import lenet; lenet.train",
}


def seconds(code: str, src: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], env=env, check=True)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--against", type=Path, metavar="OTHER_SRC", help="another checkout's src/ to compare with")
    args = parser.parse_args(argv)
    trees = {"this tree": SRC, **({"against": args.against} if args.against else {})}
    print(f"{hardware('cpu')}; load average {load_average()} before; {args.runs} runs each", flush=True)
    times: dict[tuple[str, str], list[float]] = {(p, t): [] for p in PROBES for t in trees}
    for _ in range(args.runs):
        for probe, code in PROBES.items():
            for tree, src in trees.items():
                times[probe, tree].append(seconds(code, src))
    columns = [f"{t}: median (range) s" for t in trees] + (["ratio"] if args.against else [])
    header = "| probe | " + " | ".join(columns) + " |"
    print("\n" + header + "\n|---|" + "---:|" * (len(trees) + bool(args.against)))
    for probe in PROBES:
        cells = [f"{statistics.median(times[probe, t]):.3f} ({min(times[probe, t]):.3f}-{max(times[probe, t]):.3f})"
                 for t in trees]  # fmt: skip
        if args.against:
            ratio = statistics.median(times[probe, "against"]) / statistics.median(times[probe, "this tree"])
            cells.append(f"{ratio:.2f}x")
        print(f"| {probe} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
