"""The OpenMP wait policy that sweep trials should run with: what a spinning neighbour costs a run, and what
the passive policy costs a run that has the machine to itself, side by side in one run.

    python -m benchmarks.thread_policy [--rounds 2] [--write BENCHMARKS.md]

PyTorch's CPU build runs its threads on GNU OpenMP, whose idle threads spin for a while before they
sleep (OMP_WAIT_POLICY unset), taking cores a neighbouring process could use; OMP_WAIT_POLICY=PASSIVE
makes them sleep at once. Measured, each figure the median images/s over --rounds rounds:
1. the tutorial's recipe (`seed`, 1 thread) alone, then beside a 2-thread `default` run with the
   default policy, then beside the same neighbour with PASSIVE, then with PASSIVE in both;
2. the same beside the same neighbour at niceness 15, which Ray gives its workers (RAY_worker_niceness);
3. a 2-thread `default` run alone with each policy: the price of PASSIVE when nothing competes;
4. two `default` runs started together (issue 39's neighbour goal: each at least 0.4x its speed alone,
   and alone at most 5% slower than with today's settings), for each lever: the wait policy, a shorter
   spin (GOMP_SPINCOUNT), and the thread counts (both 1, or one 2 and one 1, as a run that took its
   threads from a busy machine at its start would: what lenet chooses, core/cpushare.py, for a run started
   beside a busy one). Both runs' images/s, against 2 threads alone with OpenMP's defaults.
Every run is a fresh `lenet train` process; training images/s are read from its metrics.csv.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.sections import write_section
from benchmarks.sweep_overhead import TRAIN_CHILD, machine
from benchmarks.train_speed import load_average

SECTION = "## Trial threads and the OpenMP wait policy"
PASSIVE = {"OMP_WAIT_POLICY": "PASSIVE"}


def start(work: Path, name: str, recipe: str, threads: int | None, subset: int, epochs: int, env: dict,
          niceness: int = 0) -> subprocess.Popen:  # fmt: skip
    """`lenet train` on `subset` images; `threads` None: as a user starts it, lenet choosing (its share of a busy
    machine), with no OMP_NUM_THREADS."""
    pinned = ["--threads", str(threads)] if threads is not None else []
    args = ["train", "--recipe", recipe, "--epochs", str(epochs), *pinned, "--device", "cpu",
            "--val-split", "1000", "--eval-every", "0", "--out", str(work), "--name", name, "--no-report", "--no-progress"]  # fmt: skip
    base = {k: v for k, v in os.environ.items() if threads is not None or k != "OMP_NUM_THREADS"}
    # One session for the run and its neighbour: where the kernel groups processes by session (autogroup),
    # a niceness counts only against processes of the same session.
    return subprocess.Popen([sys.executable, "-c", TRAIN_CHILD, str(subset), "1000", *args], env={**base, **env},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            preexec_fn=(lambda: os.nice(niceness)) if niceness else None)  # fmt: skip


def images_per_s(run: Path) -> float:
    with open(run / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return statistics.median(float(r["images_per_s"]) for r in rows)


def measured(work: Path, name: str, recipe: str, threads: int, env: dict, neighbour_env: dict | None, niceness: int,
             args) -> float:  # fmt: skip
    """images/s of one run, alone or beside a 2-thread `default` neighbour that runs through all of it."""
    neighbour = None
    if neighbour_env is not None:
        neighbour = start(work, f"{name}-neighbour", "default", 2, args.neighbour_subset, args.neighbour_epochs,
                          neighbour_env)  # fmt: skip
        time.sleep(args.settle)  # the neighbour past its start-up, training
    try:
        proc = start(work, name, recipe, threads, args.subset, args.epochs, env, niceness)
        _, err = proc.communicate(timeout=900)
        if proc.returncode != 0:
            sys.exit(f"thread_policy: lenet train failed: {err.strip()[-2000:]}")
    finally:
        if neighbour is not None:
            neighbour.kill()  # one process: the training child has no children of its own
            neighbour.wait()
    return images_per_s(work / name)


CASES = (  # name, recipe, threads, the run's environment, the neighbour's (None: alone), the run's niceness
    ("seed, 1 thread, alone", "seed", 1, {}, None, 0),
    ("seed, 1 thread, beside a 2-thread default run", "seed", 1, {}, {}, 0),
    ("seed, 1 thread, beside the same neighbour with PASSIVE", "seed", 1, {}, PASSIVE, 0),
    ("seed, 1 thread, PASSIVE, beside the neighbour with PASSIVE", "seed", 1, PASSIVE, PASSIVE, 0),
    ("seed, 1 thread, at nice 15 (a Ray worker's default), beside a 2-thread default run", "seed", 1, {}, {}, 15),
    ("default, 2 threads, alone", "default", 2, {}, None, 0),
    ("default, 2 threads, alone, PASSIVE", "default", 2, PASSIVE, None, 0),
)


PAIRS = (  # name, the threads of the two runs, the environment of both
    ("OpenMP's defaults", (2, 2), {}),
    ("OMP_WAIT_POLICY=PASSIVE", (2, 2), PASSIVE),
    ("GOMP_SPINCOUNT=1000", (2, 2), {"GOMP_SPINCOUNT": "1000"}),
    ("GOMP_SPINCOUNT=5000", (2, 2), {"GOMP_SPINCOUNT": "5000"}),
    ("1 thread each", (1, 1), {}),
    ("2 threads beside 1 (lenet's choice for a run started beside a busy one)", (2, 1), {}),
)
ALONE = ("2 threads alone, OpenMP's defaults", 2, {})
ALONE_LEVERS = (ALONE, ("2 threads alone, PASSIVE", 2, PASSIVE), ("2 threads alone, GOMP_SPINCOUNT=1000", 2,
                {"GOMP_SPINCOUNT": "1000"}), ("1 thread alone", 1, {}))  # fmt: skip


def measured_pair(work: Path, name: str, threads: tuple[int, int], env: dict, args) -> tuple[float, float]:
    """images/s of two `default` runs started together, each on --pair-subset images."""
    procs = [start(work, f"{name}-{i}", "default", t, args.pair_subset, args.epochs, env) for i, t in enumerate(threads)]
    for proc in procs:
        _, err = proc.communicate(timeout=900)
        if proc.returncode != 0:
            sys.exit(f"thread_policy: lenet train failed: {err.strip()[-2000:]}")
    first, second = (images_per_s(work / f"{name}-{i}") for i in range(2))
    return first, second


def pairs_table(work: Path, args) -> str:
    """The neighbour study (part 4): each lever alone and in a pair, the medians of --rounds rounds."""
    alone: dict[str, list[float]] = {label: [] for label, *_ in ALONE_LEVERS}
    paired: dict[str, list[tuple[float, float]]] = {label: [] for label, *_ in PAIRS}
    for round_ in range(args.rounds):
        for i, (label, threads, env) in enumerate(ALONE_LEVERS):
            proc = start(work, f"p{round_}-alone{i}", "default", threads, args.pair_subset, args.epochs, env)
            proc.communicate(timeout=900)
            alone[label].append(images_per_s(work / f"p{round_}-alone{i}"))
            print(f"round {round_ + 1}: {label}: {alone[label][-1]:,.0f} images/s", flush=True)
        for i, (label, threads, env) in enumerate(PAIRS):
            paired[label].append(measured_pair(work, f"p{round_}-pair{i}", threads, env, args))
            print(f"round {round_ + 1}: pair, {label}: {paired[label][-1][0]:,.0f} and {paired[label][-1][1]:,.0f} "
                  "images/s", flush=True)  # fmt: skip
    base = statistics.median(alone[ALONE[0]])
    rows = [f"| alone: {label} | {', '.join(f'{v:,.0f}' for v in values)} | **{statistics.median(values):,.0f}** | "
            f"{statistics.median(values) / base:.2f} |" for label, values in alone.items()]  # fmt: skip
    for label, values in paired.items():
        medians = [statistics.median(v[i] for v in values) for i in range(2)]
        shown = ", ".join(f"{a:,.0f} and {b:,.0f}" for a, b in values)
        rows.append(f"| together: {label} | {shown} | **{medians[0]:,.0f}** and **{medians[1]:,.0f}** | "
                    f"{medians[0] / base:.2f} and {medians[1] / base:.2f} |")
    return (f"Two `default` runs of {args.epochs} epochs on {args.pair_subset:,} images each, started together; "
            "the last column against one run alone with 2 threads and OpenMP's defaults (the goal: each at least "
            "0.40 together, and alone at least 0.95).\n\n"
            "| runs | images/s, per round | median | against 2 threads alone |\n| --- | --- | --- | --- |\n"
            + "\n".join(rows) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--subset", type=int, default=30_000, help="training images of a measured run")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--neighbour-subset", type=int, default=60_000, help="training images of the neighbour's epochs")
    parser.add_argument("--neighbour-epochs", type=int, default=50, help="more than the measured run lasts")
    parser.add_argument("--settle", type=float, default=6.0, help="seconds the neighbour trains before the run starts")
    parser.add_argument("--pair-subset", type=int, default=20_000, help="training images of each run of a pair")
    parser.add_argument("--write", type=Path, help="put the results in this Markdown file's section")
    args = parser.parse_args()
    print(f"machine: {machine()}", flush=True)
    busy = load_average()
    figures: dict[str, list[float]] = {case[0]: [] for case in CASES}
    with tempfile.TemporaryDirectory(prefix="thread-policy-") as tmp:
        for round_ in range(args.rounds):
            for i, (label, recipe, threads, env, neighbour, niceness) in enumerate(CASES):
                value = measured(Path(tmp), f"r{round_}-{i}", recipe, threads, env, neighbour, niceness, args)
                figures[label].append(value)
                print(f"round {round_ + 1}: {label}: {value:,.0f} images/s", flush=True)
        pairs = pairs_table(Path(tmp), args)
    median = {label: statistics.median(values) for label, values in figures.items()}
    alone_seed, alone_default = median[CASES[0][0]], median[CASES[5][0]]
    rows = "".join(
        f"| {label} | {', '.join(f'{v:,.0f}' for v in figures[label])} | **{median[label]:,.0f}** | "
        f"{median[label] / (alone_seed if recipe == 'seed' else alone_default):.2f} |\n"
        for label, recipe, *_ in CASES
    )
    text = (
        f"{SECTION}\n\n"
        f"`python -m benchmarks.thread_policy --rounds {args.rounds}`, in one run. Machine: {machine()}; load "
        f"average {busy} before the run.\n\n"
        f"A measured run trains {args.epochs} epochs on {args.subset:,} images; the neighbour trains `default` "
        "with 2 threads on all of them throughout. Images/s of training (the median of the run's epochs).\n\n"
        "| run | images/s, per round | median | against the same run alone |\n| --- | --- | --- | --- |\n" + rows
        + "\n" + pairs
    )
    print(text)
    if args.write:
        write_section(args.write, "thread-policy", text)  # between its markers, nothing else touched
    return 0


if __name__ == "__main__":
    sys.exit(main())
