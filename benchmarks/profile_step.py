"""Milliseconds per training step, and where they go: one recipe's step, timed and profiled.

    python -m benchmarks.profile_step [--recipe seed] [--threads 1] [--steps 100] [--profile]
                                      [--no-pool-first] [--compile] [--precision bf16] [--whiten]

The step is the one in training/loop.py's train_epoch (gather a batch from the resident uint8
tensor, augment as the recipe says, forward, loss, backward, optimizer and schedule), on the real
training images. It prints the median milliseconds per step over --steps steps after 10 warm-up
steps, the machine and versions; with --profile, torch.profiler's share of the step's CPU time for
the heaviest operators. Run it twice with one option changed (--threads 1 and 2, --no-pool-first) to
compare, interleaved and on a quiet machine: this shared machine's speed drifts from one minute to
the next.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from dataclasses import replace


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", default="seed")
    parser.add_argument("--batch-size", type=int, help="default: the recipe's")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--precision", help="fp32, bf16 or auto (default: the recipe's)")
    parser.add_argument("--model", help="default: the recipe's")
    parser.add_argument("--no-pool-first", dest="pool_first", action="store_false")
    parser.add_argument("--no-keep-memory", dest="keep_memory", action="store_false")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--whiten", action="store_true", help="the first convolution frozen as a whitening (recipe field)")
    parser.add_argument("--profile", action="store_true", help="print the operators' share of the CPU time")
    parser.add_argument("--subset", type=int, default=0, help=argparse.SUPPRESS)  # a quick check of this script
    args = parser.parse_args(argv)

    import torch
    import torch.nn.functional as F

    from lenet import get_recipe, load_fashion_mnist
    from lenet.data.batches import batch_indices, to_float
    from lenet.training.augment import augment
    from lenet.training.engine import Engine, forward_fn, prepare, resolve_precision, training_order
    from lenet.training.build import build_model, build_optimizer, build_schedule

    recipe = get_recipe(args.recipe)
    recipe = replace(recipe, batch_size=args.batch_size) if args.batch_size else recipe
    recipe = replace(recipe, model=args.model) if args.model else recipe
    recipe = replace(recipe, whiten=True) if args.whiten else recipe
    engine = Engine(pool_first=args.pool_first, keep_memory=args.keep_memory, compile=args.compile, threads=args.threads)
    precision = resolve_precision(args.precision or recipe.precision, torch.device("cpu"))
    data = load_fashion_mnist()
    images, labels = data.train_images, data.train_labels
    if args.subset:
        images, labels = images[: args.subset], labels[: args.subset]
    torch.manual_seed(0)
    model = prepare(build_model(recipe, train_images=images), engine)
    optimizer = build_optimizer(model, recipe, engine)
    schedule = build_schedule(optimizer, recipe, 10 * (args.steps + 10))
    forward = forward_fn(model, engine, precision)
    rng = torch.Generator().manual_seed(1)
    shuffle = torch.Generator().manual_seed(0)
    order = iter(batch_indices(len(labels), recipe.batch_size, shuffle=True, generator=shuffle))

    def step() -> None:
        nonlocal order
        try:
            idx = next(order)
        except StopIteration:  # a small --subset runs out of batches: start another epoch
            order = iter(batch_indices(len(labels), recipe.batch_size, shuffle=True, generator=rng))
            idx = next(order)
        x, y = images[idx], labels[idx]
        if recipe.shift or recipe.flip:
            x = augment(x, recipe.shift, recipe.flip, rng)
        loss = F.cross_entropy(forward(to_float(x)), y, label_smoothing=recipe.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if schedule is not None:
            schedule.step()

    times = []
    with training_order(model.train(), engine):
        for _ in range(10):
            step()
        for _ in range(args.steps):
            start = time.perf_counter()
            step()
            times.append((time.perf_counter() - start) * 1000)
        if args.profile:
            from torch.profiler import ProfilerActivity, profile

            with profile(activities=[ProfilerActivity.CPU]) as prof:
                for _ in range(args.steps):
                    step()

    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    load = open("/proc/loadavg").read().split()[0] if os.path.exists("/proc/loadavg") else "?"
    print(f"{cpu}, {os.cpu_count()} logical cores, load average {load}; PyTorch {torch.__version__}, "
          f"Python {platform.python_version()}")  # fmt: skip
    print(f"recipe {args.recipe}, model {recipe.model}, batch {recipe.batch_size}, {args.threads} thread(s), pool first {args.pool_first}, "
          f"keep memory {args.keep_memory}, whiten {recipe.whiten}, "
          f"{precision}{' (auto)' * ('auto' in (args.precision, recipe.precision))}, compile {args.compile}: "
          f"{statistics.median(times):.2f} ms per step "
          f"(median of {args.steps}; fastest {min(times):.2f})")  # fmt: skip
    if args.profile:
        events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
        total = sum(e.self_cpu_time_total for e in events)
        for e in sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:12]:
            print(f"  {100 * e.self_cpu_time_total / total:5.1f}%  {e.key}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
