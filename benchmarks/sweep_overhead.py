"""What Ray costs `lenet sweep` on this machine: start-up, idle memory, a sweep against plain runs, seeds sharing a trial.

    python -m benchmarks.sweep_overhead [--trials 12] [--subset 20000] [--epochs 3] [--write BENCHMARKS.md]

1. Ray's start-up: `ray.init` of the local Ray lenet starts (2 CPUs, no dashboard), twice, each
   in a fresh process; then the idle instance's memory, the RSS and PSS of its whole process tree.
2. A sweep of `--trials` configurations (lenet_bn, `--epochs` on the first `--subset` training
   images) against the same configurations trained one after another, each a fresh `lenet train`
   process (lenet.cli.main with the data subset handed in, as the tests do): wall times and
   their ratio, in one run; both give the same validation accuracies, which is checked.
3. A many-seed study (8 seeds of one recipe) with one seed per Tune trial and with 4 seeds
   sharing a trial (`seeds_per_trial = 4`).

Ray 2.60 listens on the host's own address as well as 127.0.0.1, so this runs in a network
namespace with only `lo`: as root it puts itself in one (`unshare --net`); elsewhere it refuses
unless already in one.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.sections import write_section
from benchmarks.train_speed import load_average

REPO = Path(__file__).resolve().parents[1]
LENET = [sys.executable, "-m", "lenet.cli"]
SECTION = "## Sweep overhead (Ray)"
CPUS = 2  # the local Ray's CPUs: this machine's cores

STARTUP_CHILD = """
import json, logging, os, sys, time
t0 = time.monotonic()
import ray
t1 = time.monotonic()
ray.init(address="local", num_cpus=int(sys.argv[1]), include_dashboard=False, log_to_driver=False,
         logging_level=logging.ERROR)
t2 = time.monotonic()
time.sleep(float(sys.argv[2]))  # idle: let the prestarted workers and agents settle
print(json.dumps({"import_s": t1 - t0, "init_s": t2 - t1}), flush=True)
sys.stdin.readline()  # the parent measures the process tree meanwhile
t3 = time.monotonic()
ray.shutdown()
print(json.dumps({"shutdown_s": time.monotonic() - t3}), flush=True)
"""

# `lenet train` on the first N training images: the CLI's own main, with the subset handed in.
TRAIN_CHILD = """
import sys
import lenet.data.load
n_train, n_test = int(sys.argv[1]), int(sys.argv[2])
load = lenet.data.load.load_dataset
lenet.data.load.load_dataset = lambda *args, **kwargs: load(*args, **kwargs).subset(n_train, n_test)
from lenet.cli import main
sys.exit(main(sys.argv[3:]))
"""


def interfaces() -> list[str]:
    return [line.split(":")[0].strip() for line in Path("/proc/net/dev").read_text().splitlines()[2:]]


def ensure_loopback_namespace() -> None:
    if interfaces() == ["lo"]:
        return
    if os.geteuid() == 0 and shutil.which("unshare") and shutil.which("ip"):
        command = [sys.executable, *sys.orig_argv[1:]]  # as started: `-m benchmarks.X` stays a module run
        os.execvp("unshare", ["unshare", "--net", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", *command])
    sys.exit("sweep_overhead: Ray would listen on this machine's network address too; run it in a network "
             "namespace with only lo (as root: unshare --net sh -c 'ip link set lo up && exec CMD')")  # fmt: skip


# --- 1. start-up and idle memory -----------------------------------------------------------


def tree(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo.extend(children.get(p, []))
    return found


def memory_mb(pids: list[int]) -> tuple[float, float]:
    """Summed RSS and PSS (shared pages split among their users) of `pids`, in MB."""
    rss = pss = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Rss:"):
                    rss += int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss += int(line.split()[1])
        except OSError:
            pass
    return rss / 1024, pss / 1024


def measure_startup(settle_s: float) -> dict:
    proc = subprocess.Popen([sys.executable, "-c", STARTUP_CHILD, str(CPUS), str(settle_s)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, start_new_session=True)  # fmt: skip
    try:
        first = json.loads(proc.stdout.readline())
        pids = tree(proc.pid)
        rss, pss = memory_mb(pids)
        proc.stdin.write("\n")
        proc.stdin.flush()
        last = json.loads(proc.stdout.readline())
        proc.wait(timeout=60)
    finally:
        stop_session(proc.pid)
    return {**first, **last, "processes": len(pids), "rss_mb": rss, "pss_mb": pss}


def stop_session(sid: int) -> None:
    """SIGKILL whatever is left of the session `sid` (a child this script started)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[3]) == sid:
                    os.kill(int(entry.name), 9)
            except (OSError, ValueError):
                pass


# --- 2 and 3. sweeps against plain runs ------------------------------------------------------


def space_text(trials: int, epochs: int, subset: int, vary: bool, seeds: int = 1, per_trial: int = 1) -> str:
    text = f'base = "default"\nseeds = {seeds}\nseeds_per_trial = {per_trial}\nval_split = 500\n'
    text += f'[recipe]\nmodel = "lenet_bn"\nepochs = {epochs}\nbatch_size = 128\n'
    if vary:
        text = f"trials = {trials}\n" + text
        text += "[vary]\nlr = [0.005, 0.01, 0.02]\nweight_decay = { loguniform = [0.001, 0.1] }\n"
    return text + f"[data]\ntrain_subset = {subset}\ntest_subset = 1000\n"


def timed_sweep(work: Path, name: str, text: str) -> tuple[float, Path]:
    space = work / f"{name}.toml"
    space.write_text(text)
    start = time.monotonic()
    proc = subprocess.Popen([*LENET, "sweep", str(space), "--local-cpus", str(CPUS), "--out", str(work), "--name", name],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)  # fmt: skip
    try:
        _, err = proc.communicate(timeout=900)
    finally:
        stop_session(proc.pid)  # whatever of its local Ray outlived it
    seconds = time.monotonic() - start
    if proc.returncode != 0:
        sys.exit(f"{Path(sys.argv[0]).stem}: lenet sweep failed: {err.strip()[-2000:]}")
    return seconds, work / name


def timed_plain_runs(work: Path, sweep_dir: Path, subset: int) -> tuple[float, list[float]]:
    """Every configuration of `sweep_dir`'s plan trained by a fresh `lenet train` process, one after another."""
    from lenet.training.recipes import recipe_toml
    from lenet.sweep.plan import read_plan

    plan = read_plan(sweep_dir)
    accuracies = []
    start = time.monotonic()
    for i in range(len(plan.configurations)):
        recipe = work / f"plain-{i}.toml"
        recipe.write_text(recipe_toml(plan.recipe(i), []))
        args = ["train", "--recipe", str(recipe), "--seed", "0", "--val-split", "500", "--threads", "1",
                "--device", "cpu", "--out", str(work / "plain"), "--name", f"run-{i}", "--no-report", "--no-progress"]  # fmt: skip
        subprocess.run([sys.executable, "-c", TRAIN_CHILD, str(subset), "1000", *args], check=True, capture_output=True)
        accuracies.append(json.loads((work / "plain" / f"run-{i}" / "summary.json").read_text())["val"]["accuracy"])
    return time.monotonic() - start, accuracies


def trial_breakdown(sweep_dir: Path) -> dict[str, float]:
    """Where a sweep's trial time goes, in seconds per trial: training and evaluation (the runs' own
    metrics.csv), the rest of the trial function's time (Tune's time_total_s: start-up inside the
    worker, reading the data, checkpoints) and, by difference from the sweep's wall time, what lies
    outside every trial function (Ray's start, workers starting, scheduling, the driver)."""
    trials = [d for d in (sweep_dir / "tune").iterdir() if d.is_dir() and (d / "result.json").exists()]
    function = [json.loads((t / "result.json").read_text().splitlines()[-1])["time_total_s"] for t in trials]
    training = []
    for run in sweep_dir.glob("trial-*"):
        metrics = run / "metrics.csv" if (run / "metrics.csv").exists() else next(run.glob("seed-*/metrics.csv"))
        with open(metrics, newline="") as f:
            training.append(sum(float(r["seconds"]) + float(r["eval_seconds"] or 0) for r in csv.DictReader(f)))
    return {"trials": len(trials), "function_s": statistics.mean(function), "training_s": statistics.mean(training)}


def sweep_accuracies(sweep_dir: Path) -> list[float]:
    rows = json.loads((sweep_dir / "sweep.json").read_text())["rows"]
    return [row["val"]["mean"] for row in sorted(rows, key=lambda r: r["trial"])]


# --- the report ------------------------------------------------------------------------------


def machine() -> str:
    import ray
    import torch

    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = re.search(r"model name\s*:\s*(.+)", cpuinfo)
    cores = len(re.findall(r"^processor\s*:", cpuinfo, re.M))
    memory = int(re.search(r"MemTotal:\s*(\d+)", Path("/proc/meminfo").read_text()).group(1)) / 1024**2
    return (f"{model.group(1).strip() if model else platform.processor()}, {cores} logical cores, {memory:.0f} GiB; "
            f"Linux {platform.release()}; Python {platform.python_version()}, torch {torch.__version__}, "
            f"Ray {ray.__version__}")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--subset", type=int, default=20000, help="training images of every run (default: 20000)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--settle", type=float, default=5.0, help="seconds the idle Ray settles before its memory is read")
    parser.add_argument("--write", type=Path, help="put the results in this Markdown file's section")
    args = parser.parse_args()
    ensure_loopback_namespace()
    print(f"machine: {machine()}", flush=True)
    busy = load_average()

    startups = [measure_startup(args.settle) for _ in range(2)]
    for s in startups:
        print(f"ray.init {s['init_s']:.1f} s (import ray {s['import_s']:.1f} s), shutdown {s['shutdown_s']:.1f} s; "
              f"idle: {s['processes']} processes, RSS {s['rss_mb']:.0f} MB, PSS {s['pss_mb']:.0f} MB", flush=True)  # fmt: skip

    with tempfile.TemporaryDirectory(prefix="sweep-overhead-") as tmp:
        work = Path(tmp)
        sweep_s, sweep_dir = timed_sweep(work, "many", space_text(args.trials, args.epochs, args.subset, vary=True))
        print(f"{args.trials}-trial sweep: {sweep_s:.1f} s", flush=True)
        parts = trial_breakdown(sweep_dir)
        outside = (sweep_s * CPUS - parts["function_s"] * parts["trials"]) / parts["trials"]
        print(f"per trial: training and evaluation {parts['training_s']:.1f} s, the rest of the trial function "
              f"{parts['function_s'] - parts['training_s']:.1f} s, outside any trial function {outside:.1f} s "
              f"(of {CPUS} slots)", flush=True)  # fmt: skip
        plain_s, plain_accuracies = timed_plain_runs(work, sweep_dir, args.subset)
        print(f"the same {args.trials} runs one after another with lenet train: {plain_s:.1f} s", flush=True)
        same = plain_accuracies == sweep_accuracies(sweep_dir)
        seeds = {}
        for per in (1, 4):
            seeds[per], _ = timed_sweep(work, f"seeds-{per}", space_text(1, args.epochs, args.subset, vary=False,
                                                                           seeds=8, per_trial=per))  # fmt: skip
            print(f"8 seeds, {per} per trial: {seeds[per]:.1f} s", flush=True)

    rss = statistics.median(s["rss_mb"] for s in startups)
    pss = statistics.median(s["pss_mb"] for s in startups)
    run = f"lenet_bn, {args.epochs} epoch{'s' * (args.epochs > 1)} on {args.subset:,} training images (500 of them validation)"
    text = (
        f"{SECTION}\n\n"
        f"`python -m benchmarks.sweep_overhead --trials {args.trials} --subset {args.subset} --epochs {args.epochs}` (in a network namespace with only `lo`), in one run. "
        f"Machine: {machine()}; load average {busy} before the run (other work shares the cores).\n\n"
        "| measurement | figure |\n| --- | --- |\n"
        + "".join(f"| Ray start-up, `ray.init` of lenet's local Ray ({CPUS} CPUs), run {i} | {s['init_s']:.1f} s "
                  f"(`import ray` {s['import_s']:.1f} s before it; shutdown {s['shutdown_s']:.1f} s) |\n"
                  for i, s in enumerate(startups, 1))
        + f"| the idle local Ray's memory ({startups[0]['processes']} processes, the driver included) | "
        f"RSS {rss:.0f} MB, PSS {pss:.0f} MB |\n"
        f"| {args.trials}-trial sweep, `lenet sweep --local-cpus {CPUS}` (Ray start-up included) | {sweep_s:.1f} s |\n"
        f"| the same {args.trials} runs one after another, each a fresh `lenet train` process | {plain_s:.1f} s |\n"
        f"| one after another / sweep (the sweep's speed-up) | **{plain_s / sweep_s:.2f}x** |\n"
        f"| per trial: training and evaluation (the runs' metrics.csv) | {parts['training_s']:.1f} s |\n"
        f"| per trial: the rest of the trial function (Tune's time_total_s: the final evaluation with every "
        f"view, start-up in the worker, checkpoints) | {parts['function_s'] - parts['training_s']:.1f} s |\n"
        f"| per trial: outside every trial function ({CPUS} slots x the sweep's wall time, less the trial "
        f"functions: Ray's start, workers starting, scheduling, the driver) | {outside:.1f} s |\n"
        f"| 8 seeds of one recipe, one seed per trial (8 trials) | {seeds[1]:.1f} s |\n"
        f"| 8 seeds of one recipe, `seeds_per_trial = 4` (2 trials) | {seeds[4]:.1f} s |\n\n"
        f"Every run: {run}, one thread; the sweep runs {CPUS} trials at a time. The sweep and the plain "
        f"runs reached {'the same' if same else 'DIFFERENT'} validation accuracies. RSS counts pages shared "
        "between Ray's processes once per process; PSS splits them.\n"
    )  # fmt: skip
    print(text)
    if args.write:
        write_section(args.write, "sweep-overhead", text)  # between its markers, nothing else touched
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
