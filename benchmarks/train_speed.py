"""Training speed: the tutorial's pipeline against lenet's engine, side by side in one run.

    python -m benchmarks.train_speed [--device auto] [--epochs 3] [--workers 2] [--write BENCHMARKS.md]
                                     [--tutorial-python .venv-tutorial/bin/python]

Each measurement runs in its own child process, so that the peak resident memory of its
whole process tree (DataLoader workers included) is its own. Printed: seconds per
training epoch (evaluation excluded), images/s, the speed ratio, the test accuracy of
both after the same number of epochs, peak memory, and time to accuracy: for the tutorial's
pipeline (its recipe, 5 epochs) and lenet's `seed`, `default` and `fast` recipes whole, the
training seconds until test accuracy first reaches 90/92/93% (judged after each epoch, that
evaluation not counted) and the final figure. The tutorial's pipeline is its own code
(benchmarks/tutorial.py: torchvision's FashionMNIST + ToTensor + DataLoader) where an interpreter
with torchvision is at hand (`make bench` makes .venv-tutorial for it), else the torchvision-free
copy in benchmarks/reference.py; the tables say which. With --write FILE both tables go
into FILE's `train-speed` and `time-to-accuracy` sections (benchmarks/sections.py), with the
command, date, machine and versions they were measured with.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

TARGETS = (0.90, 0.92, 0.93)
TUTORIAL_EPOCHS = 5  # the tutorial's own run
GRAPH_NOTE = " On CUDA lenet replays its step as a CUDA graph, the engine's default there."
TRAIN_IMAGES = 60_000
REPO = Path(__file__).resolve().parents[1]
TUTORIAL_PYTHON = REPO / ".venv-tutorial" / "bin" / "python"  # scripts/get-tutorial-venv.sh makes it


def _data(args):
    """Fashion-MNIST, or with --subset N its first N training and N / 6 test images (a check of this script)."""
    from lenet import FashionMNIST, load_fashion_mnist

    data = load_fashion_mnist()
    if not args.subset:
        return data
    n, m = args.subset, max(1, args.subset // 6)
    return FashionMNIST(data.train_images[:n], data.train_labels[:n], data.test_images[:m], data.test_labels[:m],
                        data.source, data.sha256)  # fmt: skip


# --- children: each does one measurement and prints one JSON line ---------------------


def child_reference(args) -> dict:
    import torch

    from benchmarks import reference
    from lenet import create_model, evaluate
    from lenet.core.device import resolve_device

    device = resolve_device(args.device)
    data = _data(args)
    torch.manual_seed(args.seed)
    model = create_model("lenet").to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    loader = reference.train_loader(data, batch_size=64, workers=args.workers, seed=args.seed)
    test = data.to(device)
    seconds, accuracies, eval_seconds = [], [], []
    for epoch in range(args.epochs):
        seconds.append(reference.train_epoch(model, optimizer, loader, device))
        if args.judge_every_epoch or epoch == args.epochs - 1:  # judged apart, never in the epoch's seconds
            start = time.perf_counter()
            accuracies.append(evaluate(model, test.test_images, test.test_labels).accuracy)
            eval_seconds.append(time.perf_counter() - start)
    return {"seconds": seconds, "accuracy": accuracies[-1], "accuracies": accuracies, "eval_seconds": eval_seconds,
            **_gpu_memory(device)}  # fmt: skip


def child_engine(args) -> dict:
    from dataclasses import replace

    from lenet import TrainConfig, get_recipe, train
    from lenet.training.engine import Engine

    recipe = get_recipe(args.recipe)
    recipe = replace(recipe, epochs=args.epochs) if args.epochs else recipe  # 0: the recipe's own
    recipe = replace(recipe, precision=args.precision) if args.precision else recipe  # else the recipe's own
    fast = not args.plain
    engine = Engine(channels_last=fast, fused=fast, pool_first=fast, keep_memory=fast, threads=args.threads,
                    cuda_graph=fast and args.cuda_graph)  # fmt: skip
    config = TrainConfig(recipe=recipe, recipe_name=args.recipe, seed=args.seed, device=args.device, save=False,
                         progress=False, engine=engine)  # fmt: skip
    result = train(config, _data(args))
    rows = result.history
    return {
        "seconds": [r.seconds for r in rows],
        "accuracy": result.final.accuracy,
        "accuracies": [r.eval_accuracy for r in rows],
        "eval_seconds": [r.eval_seconds for r in rows],
        **_gpu_memory(result.model.net.conv[0].weight.device),
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
    common = ["--device", args.device, "--epochs", str(args.epochs), "--workers", str(args.workers), "--seed", str(args.seed)]
    common += ["--threads", str(args.threads)] if args.threads else []
    if kind == "reference" and args.tutorial_root:  # the tutorial's own code, under its own interpreter
        command = [args.tutorial_python, str(REPO / "benchmarks" / "tutorial.py"), "--root", str(args.tutorial_root), *common, *extra]
    else:
        command = [sys.executable, "-m", "benchmarks.train_speed", "--child", kind, *common, *extra]
        command += ["--subset", str(args.subset)] if args.subset else []
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=REPO)
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


def has_torchvision(python: str) -> bool:
    """Whether `python` is an interpreter that imports torchvision (the tutorial's own pipeline needs it)."""
    try:
        return subprocess.run([python, "-c", "import torchvision"], capture_output=True, timeout=120).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def write_tutorial_root(data, root: Path) -> Path:
    """`data` as the four uncompressed IDX files torchvision's FashionMNIST reads from root/FashionMNIST/raw/
    (what its download would leave there), so the tutorial's code trains on lenet's bytes, offline."""
    from lenet.data.idx import idx_bytes

    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    files = {"train-images-idx3-ubyte": data.train_images[:, 0], "train-labels-idx1-ubyte": data.train_labels,
             "t10k-images-idx3-ubyte": data.test_images[:, 0], "t10k-labels-idx1-ubyte": data.test_labels}  # fmt: skip
    for name, tensor in files.items():
        (raw / name).write_bytes(idx_bytes(tensor))
    return root


def reference_name(args, run: dict, detail: str) -> str:
    """The reference's row label: which of the two pipelines ran, and `detail`."""
    if args.tutorial_root:
        return f"tutorial's own code (`benchmarks/tutorial.py`, {run['versions']}, {detail})"
    return f"tutorial pipeline (`benchmarks/reference.py`, {detail})"


def reference_note(args, run: dict | None) -> str:
    """The sentence that says which pipeline the tables' reference is."""
    if run is None:
        return "No reference was run (`--skip-reference`)."
    if args.tutorial_root:
        return (f"The reference is the tutorial's own code (benchmarks/tutorial.py: torchvision's `FashionMNIST` + "
                f"`ToTensor` + `DataLoader`, its LeNet and training loop) under {run['versions']}, in the "
                "benchmark's own venv (`make bench` makes it); lenet runs under the PyTorch above.")  # fmt: skip
    return ("The reference is benchmarks/reference.py, the torchvision-free copy of the tutorial's `FashionMNIST` + "
            "`ToTensor` + `DataLoader` (no interpreter with torchvision was at hand; `make bench` makes one where "
            "torchvision installs).")  # fmt: skip


def hardware(device: str) -> str:
    import torch

    from lenet.core.device import describe, resolve_device

    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    return (f"{describe(resolve_device(device))}; CPU {cpu}, {os.cpu_count()} logical cores; "
            f"PyTorch {torch.__version__}; Python {platform.python_version()}")  # fmt: skip


def on_cuda(device: str) -> bool:
    from lenet.core.device import resolve_device

    return resolve_device(device).type == "cuda"


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
    parser.add_argument("--tutorial-python", default=str(TUTORIAL_PYTHON),
                        help="an interpreter with torchvision, to run the tutorial's own pipeline as the reference "
                             "(default: .venv-tutorial's; where it is missing or has no torchvision, or given as '', "
                             "the torchvision-free copy in benchmarks/reference.py)")  # fmt: skip
    parser.add_argument("--skip-time-to-accuracy", action="store_true")
    parser.add_argument("--tta-recipes", default="seed,default,fast",
                        help="lenet recipes timed to accuracy, beside the tutorial's pipeline")  # fmt: skip
    parser.add_argument("--write", type=Path, metavar="FILE",
                        help="put the tables in FILE's train-speed and time-to-accuracy sections (BENCHMARKS.md)")  # fmt: skip
    parser.add_argument("--section-prefix", default="", metavar="TEXT",
                        help="with --write: name the sections TEXT + train-speed and TEXT + time-to-accuracy "
                             "(benchmarks/gpu.sh writes gpu-...)")  # fmt: skip
    parser.add_argument("--subset", type=int, default=0, metavar="N",
                        help="train on the first N images only: a quick check of this script, not a measurement")  # fmt: skip
    parser.add_argument("--no-cuda-graph", dest="cuda_graph", action="store_false", help=argparse.SUPPRESS)
    parser.add_argument("--tta-epochs", type=int, default=0, help=argparse.SUPPRESS)  # 0: the recipe's own
    parser.add_argument("--judge-every-epoch", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--precision", help=argparse.SUPPRESS)
    parser.add_argument("--plain", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child", choices=("reference", "engine"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        result = (child_reference if args.child == "reference" else child_engine)(args)
        print(json.dumps(result))
        return 0

    print(hardware(args.device))
    started, load = time.strftime("%Y-%m-%d %H:%M"), load_average()
    with tempfile.TemporaryDirectory(prefix="lenet-tutorial-") as root:
        args.tutorial_root = None
        if not args.skip_reference and args.tutorial_python and has_torchvision(args.tutorial_python):
            args.tutorial_root = write_tutorial_root(_data(args), Path(root))
            print(f"reference: the tutorial's own code, under {args.tutorial_python}\n")
        elif not args.skip_reference:
            print("reference: benchmarks/reference.py (no interpreter with torchvision at hand)\n")
        rows = speed_table(args)
        runs = {} if args.skip_time_to_accuracy else time_to_accuracy_runs(args)
    if args.write:
        from benchmarks.sections import write_section

        command = "python -m benchmarks.train_speed " + " ".join(argv if argv is not None else sys.argv[1:])
        context = (f"`{command}`, started {started}, load average {load} before it; {hardware(args.device)}."
                   + (f" **A check of the script on a subset of {args.subset:,} training images, not a measurement.**"
                      if args.subset else ""))  # fmt: skip
        write_section(args.write, args.section_prefix + "train-speed", speed_markdown(rows, args, context))
        if runs:
            write_section(args.write, args.section_prefix + "time-to-accuracy",
                          time_to_accuracy_markdown(runs, args, context))
        print(f"written to {args.write}")
    return 0


def load_average() -> str:
    path = Path("/proc/loadavg")
    return path.read_text().split()[0] if path.exists() else "?"


def speed_table(args) -> dict[str, dict]:
    """The tutorial's recipe through each pipeline: seconds per epoch, accuracy, memory."""
    print(f"tutorial recipe (sigmoid LeNet, Adam lr 0.01, batch 64), {args.epochs} epochs, seed {args.seed}\n")
    rows = {}
    if not args.skip_reference:
        run = run_child("reference", args)
        rows[reference_name(args, run, f"PIL image + `ToTensor` per sample, `DataLoader`, {args.workers} workers")] = run
    # On CUDA the engine replays its step as a CUDA graph; off CUDA that option does nothing, so it goes unnamed.
    cuda = on_cuda(args.device)
    plain_flags = "--no-channels-last --no-fused --no-pool-first --no-keep-memory" + " --no-cuda-graph" * cuda
    rows[f"lenet, plain step (`{plain_flags}`)"] = run_child("engine", args, ["--recipe", "seed", "--plain"])
    features = "channels-last, fused Adam, pool first, freed memory kept" + ", the step as a CUDA graph" * cuda
    rows[f"lenet engine, default ({features})"] = run_child("engine", args, ["--recipe", "seed"])
    rows["lenet engine, `--precision bf16`"] = run_child("engine", args, ["--recipe", "seed", "--precision", "bf16"])
    if cuda:
        rows["lenet engine, `--no-cuda-graph` (the step eager)"] = run_child(
            "engine", args, ["--recipe", "seed", "--no-cuda-graph"])  # fmt: skip
    images = args.subset or TRAIN_IMAGES
    print(f"{'pipeline':<66} {'s/epoch':>8} {'img/s':>9} {'test acc':>9} {'peak RSS':>9} {'GPU peak':>9}")
    for name, r in rows.items():
        gpu = f"{r['gpu_peak_mb']:.0f} MB" if "gpu_peak_mb" in r else "-"
        s = steady(r["seconds"])
        print(f"{name[:66]:<66} {s:>8.2f} {images / s:>9,.0f} {r['accuracy']:>9.2%} "
              f"{r['peak_rss_mb']:>6.0f} MB {gpu:>9}")  # fmt: skip
    if not args.skip_reference:
        reference, *ours = rows.values()
        for name, r in zip(list(rows)[1:], ours):
            print(f"speed-up, {name}: {steady(reference['seconds']) / steady(r['seconds']):.1f}x")
        print("(per epoch: the fastest epoch after the first, so start-up and worker spawn do not count)")
    return rows


def speed_markdown(rows: dict[str, dict], args, context: str) -> str:
    images = args.subset or TRAIN_IMAGES
    reference = next(iter(rows.values())) if not args.skip_reference else None
    gpu = any("gpu_peak_mb" in r for r in rows.values())
    lines = [
        f"{context} The tutorial recipe: sigmoid LeNet, Adam lr 0.01, batch 64, seed {args.seed}. Seconds per "
        f"epoch of {images:,} training images, evaluation excluded, the fastest epoch after the first (start-up and "
        "worker spawn do not count; the first if it is the only one); peak RSS is the process tree's (the "
        f"reference's DataLoader workers included), sampled every 50 ms. {reference_note(args, reference)}",
        "",
        f"| pipeline | s/epoch | images/s | speed-up | test acc after {args.epochs} epochs | peak RSS |"
        + (" GPU peak |" if gpu else ""),
        "| --- | ---: | ---: | ---: | ---: | ---: |" + (" ---: |" if gpu else ""),
    ]
    for name, r in rows.items():
        s = steady(r["seconds"])
        speedup = f"{steady(reference['seconds']) / s:.1f}x" if reference else "-"
        cells = [name, f"{s:.2f}", f"{images / s:,.0f}", speedup, f"{r['accuracy']:.2%}", f"{r['peak_rss_mb']:.0f} MB"]
        cells += [f"{r['gpu_peak_mb']:.0f} MB" if "gpu_peak_mb" in r else "-"] if gpu else []
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def time_to_accuracy_runs(args) -> dict[str, dict]:
    """The tutorial's pipeline and each lenet recipe, whole: when test accuracy first reaches each target."""
    runs = {}
    if not args.skip_reference:
        epochs = args.tta_epochs or TUTORIAL_EPOCHS
        run = run_child("reference", _epochs(args, epochs), ["--judge-every-epoch"])
        label = reference_name(args, run, f"its recipe, {epochs} epochs")
        runs[label] = _reached(label, run)
    for recipe in args.tta_recipes.split(","):
        label = f"lenet `{recipe}`"
        runs[label] = _reached(label, run_child("engine", _epochs(args, args.tta_epochs), ["--recipe", recipe]))
    return runs


def _epochs(args, epochs: int) -> argparse.Namespace:
    return argparse.Namespace(**{**vars(args), "epochs": epochs})


def _reached(label: str, run: dict) -> dict:
    print(f"\n{label}: training seconds to test accuracy (judged after each epoch, not counted)")
    elapsed, reached = 0.0, {}
    # Per epoch, lenet judges the image and its mirror only; the last figure is the finished model's, every view.
    accuracies = [*run["accuracies"][:-1], run["accuracy"]]
    for seconds, accuracy in zip(run["seconds"], accuracies):
        elapsed += seconds
        for target in TARGETS:
            if accuracy is not None and accuracy >= target:
                reached.setdefault(target, elapsed)
    for target in TARGETS:
        at = reached.get(target)
        print(f"  {target:.0%}: {f'{at:.1f} s' if at is not None else 'not reached'}")
    gpu = f", GPU peak {run['gpu_peak_mb']:.0f} MB" if "gpu_peak_mb" in run else ""
    print(f"  final {run['accuracy']:.2%} after {elapsed:.1f} s ({len(run['seconds'])} epochs); evaluation took "
          f"{sum(run['eval_seconds']):.1f} s in all (not counted); peak RSS {run['peak_rss_mb']:.0f} MB{gpu}")  # fmt: skip
    return {**run, "reached": reached, "elapsed": elapsed}


def time_to_accuracy_markdown(runs: dict[str, dict], args, context: str) -> str:
    reference = next(iter(runs.values())) if not args.skip_reference else None
    targets = " | ".join(f"{t:.0%}" for t in TARGETS)
    gpu = any("gpu_peak_mb" in r for r in runs.values())
    lines = [
        f"{context} Each recipe whole, seed 0, test accuracy judged after each epoch; training seconds until it "
        "first reaches each target, evaluation excluded. lenet judges each epoch with the image and its mirror "
        "only and the finished model with every test-time view of the recipe (the final figure, counted at the "
        f"end of training).{GRAPH_NOTE * on_cuda(args.device)} {reference_note(args, reference)}",
        "",
        f"| pipeline and recipe | {targets} | final | epochs | s/epoch | evaluation, all epochs | peak RSS |"
        + (" GPU peak |" if gpu else ""),
        "| --- |" + " ---: |" * (len(TARGETS) + 5) + (" ---: |" if gpu else ""),
    ]
    for label, run in runs.items():
        epochs = len(run["seconds"])
        reached = [f"{run['reached'][t]:.1f} s" if t in run["reached"] else "not reached" for t in TARGETS]
        cells = [label, *reached, f"{run['accuracy']:.2%} after {run['elapsed']:.1f} s", str(epochs),
                 f"{run['elapsed'] / epochs:.2f}", f"{sum(run['eval_seconds']):.1f} s", f"{run['peak_rss_mb']:.0f} MB"]  # fmt: skip
        cells += [f"{run['gpu_peak_mb']:.0f} MB" if "gpu_peak_mb" in run else "-"] if gpu else []
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
