"""The tutorial's whole process against lenet's, side by side: start-up, data, training and evaluation.

    python -m benchmarks.whole_process [--runs 5] [--epochs 2] [--tutorial-python .venv-tutorial/bin/python]
                                       [--write BENCHMARKS.md] [--section whole-process]

Each run is a fresh process, timed from outside from its start to its exit, so everything a user waits
for counts: the interpreter and torch starting, reading the data, the epochs and the test evaluations.

- The tutorial's own code: benchmarks/tutorial.py under torchvision (the venv `make bench` makes), its
  DataLoader with 2 workers, judged on the test set after every epoch, as the tutorial prints it.
- lenet: `lenet train --recipe seed --epochs E --no-report`, the same recipe, also judged after every
  epoch; the report is left out because the tutorial has nothing like it (lenet writes its run
  directory: weights, config, metrics).

The two take turns (tutorial, lenet, tutorial, ...) after one warm-up run each, so that a change in the
machine's speed falls on both alike. Printed: each one's wall and CPU seconds (user + system, its
DataLoader workers included), median and range, its test accuracy, and the ratio tutorial / lenet of
each pair's wall seconds, with the machine and versions. Peak memory is `/usr/bin/time`'s "Maximum resident
set size": the largest resident set of the process or of any child it waited for (its DataLoader workers).
It is measured by /usr/bin/time, not by this process's own wait4, because a child started from a large
process (this one holds torch and the data) inherits that process's peak in its own at exec.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.sections import write_section
from benchmarks.train_speed import hardware, has_torchvision, load_average, write_tutorial_root

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SECTION = "whole-process"


@dataclass
class Timings:
    label: str
    command: list[str]
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    peak_mib: list[float] = field(default_factory=list)
    accuracy: str = ""

    def row(self) -> str:
        memory = _spread(self.peak_mib, ".0f")
        return f"| {self.label} | {_spread(self.wall)} | {_spread(self.cpu)} | {memory} | {self.accuracy} |"


def _spread(values: list[float], form: str = ".2f") -> str:
    return f"{statistics.median(values):{form}} ({min(values):{form}}-{max(values):{form}})"


TIME = "/usr/bin/time"  # GNU time (Debian's `time` package)


def timed(command: list[str], env: dict[str, str]) -> tuple[float, float, float, str]:
    """Wall seconds, CPU seconds, peak resident MiB (the process and the children it waited for) and the
    output of one run."""
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.NamedTemporaryFile("r") as peak:
        proc = subprocess.Popen([TIME, "-f", "%M", "-o", peak.name, *command], stdout=out, stderr=subprocess.STDOUT,
                                env=env, cwd=REPO)  # fmt: skip
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read()
        kib = peak.read().split()
    if proc.returncode:
        sys.exit(f"{command[0]} ... exited with {proc.returncode}:\n{text[-2000:]}")
    return wall, usage.ru_utime + usage.ru_stime, int(kib[-1]) / 1024, text


def tutorial_result(text: str) -> dict:
    """The JSON line benchmarks/tutorial.py ends with: its accuracy, seconds and versions."""
    return json.loads(text.strip().splitlines()[-1])


def tutorial_accuracy(text: str) -> str:
    return f"{100 * tutorial_result(text)['accuracy']:.2f}%"


def lenet_accuracy(text: str) -> str:
    match = re.search(r"test accuracy ([\d.]+%)", text)
    return match.group(1) if match else "?"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs of each, after one warm-up run each")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tutorial-python", default=str(REPO / ".venv-tutorial" / "bin" / "python"),
                        help="an interpreter with torch and torchvision (make bench makes .venv-tutorial)")  # fmt: skip
    parser.add_argument("--write", type=Path, metavar="FILE", help="put the table in FILE's section (BENCHMARKS.md)")
    parser.add_argument("--section", default=DEFAULT_SECTION, help="with --write: the section's name")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.epochs < 1:
        parser.error("--runs and --epochs must be at least 1")
    if not os.access(TIME, os.X_OK):
        parser.error(f"{TIME} measures each process's peak memory: install Debian's `time` package")
    if not has_torchvision(args.tutorial_python):
        parser.error(f"{args.tutorial_python} cannot import torchvision: `make tutorial-venv` makes .venv-tutorial")

    from lenet import load_fashion_mnist

    context = (f"`python -m benchmarks.whole_process --runs {args.runs} --epochs {args.epochs}`, started "
               f"{time.strftime('%Y-%m-%d %H:%M')}, load average {load_average()} before it; {hardware('cpu')}")  # fmt: skip
    print(context, flush=True)
    with tempfile.TemporaryDirectory(prefix="lenet-whole-") as scratch:
        root = write_tutorial_root(load_fashion_mnist(), Path(scratch) / "tutorial")
        env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
        tutorial = Timings("the tutorial's own code (`benchmarks/tutorial.py`)",
                           [args.tutorial_python, "benchmarks/tutorial.py", "--root", str(root), "--epochs",
                            str(args.epochs), "--workers", "2", "--seed", str(args.seed), "--judge-every-epoch"])  # fmt: skip
        lenet = Timings(f"`lenet train --recipe seed --epochs {args.epochs} --no-report`",
                        [sys.executable, "-m", "lenet.cli", "train", "--recipe", "seed", "--epochs", str(args.epochs),
                         "--seed", str(args.seed), "--no-report", "--no-progress", "--out", str(Path(scratch) / "runs")])  # fmt: skip
        # Warm-up runs (page cache, compiled bytecode); the tutorial's also names its torch and torchvision.
        versions = tutorial_result(timed(tutorial.command, env)[-1])["versions"]
        timed(lenet.command, env)
        ratios = []
        for run in range(args.runs):
            for one, accuracy in ((tutorial, tutorial_accuracy), (lenet, lenet_accuracy)):
                wall, cpu, peak, text = timed(one.command, env)
                one.wall.append(wall)
                one.cpu.append(cpu)
                one.peak_mib.append(peak)
                one.accuracy = accuracy(text)
            ratios.append(tutorial.wall[-1] / lenet.wall[-1])
            print(f"run {run + 1}: tutorial {tutorial.wall[-1]:.2f} s, lenet {lenet.wall[-1]:.2f} s, "
                  f"{ratios[-1]:.2f}x", flush=True)
    text = "\n".join([
        context + f". The tutorial's code under {versions} (its own venv); lenet under the PyTorch above. "
        f"{args.runs} runs of each, taking turns after a warm-up run each; seconds from the process's start to its exit.",
        "",
        "| process | wall s, median (range) | CPU s, median (range) | peak resident MiB, median (range) | test accuracy |",
        "| --- | --- | --- | --- | --- |",
        tutorial.row(),
        lenet.row(),
        "",
        f"lenet's whole process is **{statistics.median(ratios):.2f}x** as fast as the tutorial's (median of the "
        f"pairs' ratios; range {min(ratios):.2f}-{max(ratios):.2f}x).",
    ])  # fmt: skip
    print("\n" + text)
    if args.write:
        write_section(args.write, args.section, text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
