"""Optuna (Tune's OptunaSearch, TPE) against random search, on the same budget of trials, in one run.

    python -m benchmarks.search_compare [--trials 16] [--search-seeds 3] [--subset 6000] [--epochs 2] \\
        [--write BENCHMARKS.md]

Each search algorithm runs `--search-seeds` sweeps (sample_seed 1, 2, ...) of `--trials` configurations
of one SPACE (below: learning rate, weight decay, label smoothing and batch size of the default recipe,
`--epochs` on the first `--subset` training images, judged on 1,000 held-out ones); the sweeps alternate
(random 1, optuna 1, random 2, ...) so that a change of the machine's load falls on both alike. Printed:
the best configuration's validation accuracy of every sweep, each algorithm's mean over its search
seeds, and the ratios optuna / random of the best accuracy and of the best error (1 - accuracy).

Runs in a network namespace with only `lo`, as benchmarks/sweep_overhead.py does.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

from benchmarks.sections import write_section
from benchmarks.sweep_overhead import CPUS, ensure_loopback_namespace, machine, timed_sweep
from benchmarks.train_speed import load_average

SECTION = "## Optuna against random search"
SEARCHES = ("random", "optuna")


def val_split(subset: int) -> int:
    return min(1000, subset // 5)  # held-out images that judge; a fifth of a tiny subset


def space_text(search: str, sample_seed: int, trials: int, epochs: int, subset: int) -> str:
    return (
        f'search = "{search}"\nsample_seed = {sample_seed}\ntrials = {trials}\nval_split = {val_split(subset)}\n'
        f'base = "default"\n[recipe]\nepochs = {epochs}\n'
        "[vary]\n"
        "lr = { loguniform = [0.0003, 0.1] }\n"
        "weight_decay = { loguniform = [0.00001, 0.3] }\n"
        "label_smoothing = { uniform = [0.0, 0.2] }\n"
        "batch_size = { choice = [32, 64, 128, 256] }\n"
        f"[data]\ntrain_subset = {subset}\ntest_subset = 1000\n"
    )


def run_sweep(work: Path, search: str, seed: int, args) -> tuple[float, float]:
    """One sweep as a `lenet sweep` process; its best configuration's validation accuracy, and its seconds."""
    text = space_text(search, seed, args.trials, args.epochs, args.subset)
    seconds, directory = timed_sweep(work, f"{search}-{seed}", text)
    rows = json.loads((directory / "sweep.json").read_text())["rows"]
    return max(row["val"]["mean"] for row in rows if "val" in row), seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--search-seeds", type=int, default=3)
    parser.add_argument("--subset", type=int, default=6000, help="training images of every run (default: 6000)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--write", type=Path, help="put the results in this Markdown file's section")
    args = parser.parse_args()
    ensure_loopback_namespace()
    print(f"machine: {machine()}", flush=True)
    busy = load_average()
    best: dict[str, list[float]] = {s: [] for s in SEARCHES}
    seconds: dict[str, list[float]] = {s: [] for s in SEARCHES}
    with tempfile.TemporaryDirectory(prefix="search-compare-") as tmp:
        for seed in range(1, args.search_seeds + 1):
            for search in SEARCHES:
                accuracy, took = run_sweep(Path(tmp), search, seed, args)
                best[search].append(accuracy)
                seconds[search].append(took)
                print(f"{search} sample_seed {seed}: best {accuracy:.2%} val, {took:.0f} s", flush=True)

    mean = {s: statistics.mean(best[s]) for s in SEARCHES}
    rows = "".join(
        f"| {s} | {', '.join(f'{a:.2%}' for a in best[s])} | **{mean[s]:.2%}** | {min(best[s]):.2%} | "
        f"{statistics.mean(seconds[s]):.0f} s |\n"
        for s in SEARCHES
    )
    text = (
        f"{SECTION}\n\n"
        f"`python -m benchmarks.search_compare --trials {args.trials} --search-seeds {args.search_seeds} "
        f"--subset {args.subset} --epochs {args.epochs}`, in one run (in a network namespace with only `lo`). "
        f"Machine: {machine()}; load average {busy} before the run.\n\n"
        f"Each sweep: {args.trials} configurations of the default recipe ({args.epochs} epochs on the first "
        f"{args.subset:,} training images, {val_split(args.subset):,} of them held out to judge), drawing lr (log 0.0003-0.1), "
        "weight_decay (log 0.00001-0.3), label_smoothing (0-0.2) and batch_size (32, 64, 128, 256); "
        f"{CPUS} trials at a time. Each algorithm ran with sample_seed 1 to {args.search_seeds}.\n\n"
        "| search | best validation accuracy, per sample_seed | mean | lowest | seconds per sweep |\n"
        "| --- | --- | --- | --- | --- |\n" + rows + "\n"
        f"optuna / random: best accuracy **{mean['optuna'] / mean['random']:.4f}x**, best error "
        f"(1 - accuracy) **{(1 - mean['optuna']) / (1 - mean['random']):.3f}x**.\n"
    )
    print(text)
    if args.write:
        write_section(args.write, "search-compare", text)  # between its markers, nothing else touched
    return 0


if __name__ == "__main__":
    sys.exit(main())
