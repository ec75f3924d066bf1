"""Training speed: the tutorial's pipeline against lenet's engine, side by side in one run.

    python -m benchmarks.train_speed [--device auto] [--epochs 3] [--workers 2]

Each measurement runs in its own child process, so that the peak resident memory of its
whole process tree (DataLoader workers included) is its own. Printed: seconds per
training epoch (evaluation excluded), images/s, the speed ratio, the test accuracy of
both after the same number of epochs, peak memory, and the default recipe's
time-to-accuracy (training seconds until test accuracy first reaches 90/91/92%,
judged after each epoch; evaluation time is reported apart).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

TARGETS = (0.90, 0.91, 0.92)


# --- children: each does one measurement and prints one JSON line ---------------------


def child_reference(args) -> dict:
    import torch

    from benchmarks import reference
    from lenet import create_model, evaluate, load_fashion_mnist
    from lenet.device import resolve_device

    device = resolve_device(args.device)
    data = load_fashion_mnist()
    torch.manual_seed(args.seed)
    model = create_model("lenet").to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    loader = reference.train_loader(data, batch_size=64, workers=args.workers, seed=args.seed)
    seconds = [reference.train_epoch(model, optimizer, loader, device) for _ in range(args.epochs)]
    test = data.to(device)
    accuracy = evaluate(model, test.test_images, test.test_labels).accuracy
    return {"seconds": seconds, "accuracy": accuracy, **_gpu_memory(device)}


def child_engine(args) -> dict:
    from dataclasses import replace

    from lenet import TrainConfig, get_recipe, load_fashion_mnist, train

    from lenet.engine import Engine

    recipe = get_recipe(args.recipe)
    recipe = replace(recipe, epochs=args.epochs) if args.epochs else recipe  # 0: the recipe's own
    fast = not args.plain
    engine = Engine(channels_last=fast, fused=fast, pool_first=fast, precision=args.precision, threads=args.threads)
    config = TrainConfig(recipe=recipe, recipe_name=args.recipe, seed=args.seed, device=args.device, save=False,
                         progress=False, engine=engine)  # fmt: skip
    result = train(config, load_fashion_mnist())
    rows = result.history
    return {
        "seconds": [r.seconds for r in rows],
        "accuracy": result.final.accuracy,
        "accuracies": [r.eval_accuracy for r in rows],
        "eval_seconds": [r.eval_seconds for r in rows],
        **_gpu_memory(result.model.conv[0].weight.device),
    }


def _gpu_memory(device) -> dict:
    import torch

    if device.type != "cuda":
        return {}
    return {"gpu_peak_mb": torch.cuda.max_memory_allocated(device) / 2**20}


# --- the parent: runs the children and watches their memory ---------------------------


def tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants (Linux /proc).

    Walks the tree through /proc/PID/task/TID/children rather than scanning all of /proc, so
    that sampling every 50 ms takes next to no CPU from the run it measures.
    """
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/statm") as f:
                total += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except (OSError, ValueError):  # the process (or a thread) ended while we looked
            continue
    return total / 2**20


def run_child(kind: str, args, extra: list[str] = ()) -> dict:
    command = [sys.executable, "-m", "benchmarks.train_speed", "--child", kind, "--device", args.device,
               "--epochs", str(args.epochs), "--workers", str(args.workers), "--seed", str(args.seed), *extra]  # fmt: skip
    if args.threads:
        command += ["--threads", str(args.threads)]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[1])
    peak = [0.0]

    def watch():
        while proc.poll() is None:
            peak[0] = max(peak[0], tree_rss_mb(proc.pid))
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    out, _ = proc.communicate()
    watcher.join()
    if proc.returncode != 0:
        raise SystemExit(f"benchmark child {kind} failed (exit {proc.returncode})")
    return {**json.loads(out.strip().splitlines()[-1]), "peak_rss_mb": peak[0]}


def hardware(device: str) -> str:
    import torch

    from lenet.device import describe, resolve_device

    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    return (f"{describe(resolve_device(device))}; CPU {cpu}, {os.cpu_count()} logical cores; "
            f"PyTorch {torch.__version__}; Python {platform.python_version()}")  # fmt: skip


def steady(seconds: list[float]) -> float:
    """Per-epoch seconds without the first epoch (start-up, worker spawn, allocator warm-up)."""
    return min(seconds[1:]) if len(seconds) > 1 else seconds[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--epochs", type=int, default=3, help="epochs timed for the reference and the engine")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers of the reference")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--recipe", default="seed")
    parser.add_argument("--threads", type=int, help="CPU threads for lenet's engine (default: PyTorch's)")
    parser.add_argument("--skip-reference", action="store_true")
    parser.add_argument("--skip-time-to-accuracy", action="store_true")
    parser.add_argument("--tta-precisions", default="fp32,bf16", help="precisions to time the default recipe in")
    parser.add_argument("--precision", default="fp32", help=argparse.SUPPRESS)
    parser.add_argument("--plain", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child", choices=("reference", "engine"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        result = (child_reference if args.child == "reference" else child_engine)(args)
        print(json.dumps(result))
        return 0

    print(hardware(args.device))
    speed_table(args)
    for precision in [] if args.skip_time_to_accuracy else args.tta_precisions.split(","):
        time_to_accuracy(args, precision)
    return 0


def speed_table(args) -> None:
    """The tutorial's recipe through each pipeline: seconds per epoch, accuracy, memory."""
    print(f"tutorial recipe (sigmoid LeNet, Adam lr 0.01, batch 64), {args.epochs} epochs, seed {args.seed}\n")
    rows = {}
    if not args.skip_reference:
        rows[f"tutorial pipeline (PIL + DataLoader, {args.workers} workers)"] = run_child("reference", args)
    plain = "lenet, plain step (--no-channels-last --no-fused --no-pool-first)"
    rows[plain] = run_child("engine", args, ["--recipe", "seed", "--plain"])
    rows["lenet engine (default: channels-last, fused Adam, pool first)"] = run_child("engine", args, ["--recipe", "seed"])
    rows["lenet engine, --precision bf16"] = run_child("engine", args, ["--recipe", "seed", "--precision", "bf16"])
    print(f"{'pipeline':<66} {'s/epoch':>8} {'img/s':>9} {'test acc':>9} {'peak RSS':>9} {'GPU peak':>9}")
    for name, r in rows.items():
        gpu = f"{r['gpu_peak_mb']:.0f} MB" if "gpu_peak_mb" in r else "-"
        s = steady(r["seconds"])
        print(f"{name:<66} {s:>8.2f} {60000 / s:>9,.0f} {r['accuracy']:>9.2%} {r['peak_rss_mb']:>6.0f} MB {gpu:>9}")
    if not args.skip_reference:
        reference, *ours = rows.values()
        for name, r in zip(list(rows)[1:], ours):
            print(f"speed-up, {name}: {steady(reference['seconds']) / steady(r['seconds']):.1f}x")
        print("(per epoch: the fastest epoch after the first, so start-up and worker spawn do not count)")


def time_to_accuracy(args, precision: str) -> None:
    """The default recipe, whole: training seconds until test accuracy first reaches each target."""
    run = run_child("engine", argparse.Namespace(**{**vars(args), "epochs": 0}), ["--recipe", "default", "--precision", precision])
    print(f"\ndefault recipe, --precision {precision}: training seconds to test accuracy (judged after each epoch)")
    elapsed, reached = 0.0, {}
    for seconds, accuracy in zip(run["seconds"], run["accuracies"]):
        elapsed += seconds
        for target in TARGETS:
            if accuracy >= target:
                reached.setdefault(target, elapsed)
    for target in TARGETS:
        at = reached.get(target)
        print(f"  {target:.0%}: " + (f"{at:.1f} s" if at is not None else f"not reached in {len(run['seconds'])} epochs"))
    gpu = f", GPU peak {run['gpu_peak_mb']:.0f} MB" if "gpu_peak_mb" in run else ""
    print(f"  final {run['accuracy']:.2%} after {elapsed:.1f} s; evaluation took {sum(run['eval_seconds']):.1f} s "
          f"in all (not counted); peak RSS {run['peak_rss_mb']:.0f} MB{gpu}")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
