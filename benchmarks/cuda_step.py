"""Milliseconds per training step on a CUDA GPU: eager, replayed as a CUDA graph, and what bounds it.

    python -m benchmarks.cuda_step [--recipes seed,fast] [--steps 500]

For each recipe, on the real training images resident on the GPU, the median of five timed
stretches of --steps steps (each after a warm-up), in milliseconds per step:
  eager        the engine's Step as `lenet train` runs it without --cuda-graph (the loop's batch
               gather, augmentation and loss and accuracy sums included, as in train_epoch);
  graph        the same with --cuda-graph (forward, loss and backward replayed; optimizer and
               schedule eager);
  whole graph  forward, loss, backward and the optimizer in one graph (capturable Adam, the lr held
               constant: what a recipe without a schedule could take; a probe, not an engine path);
  replay only  the graph of forward, loss and backward replayed back to back with nothing around it:
               the GPU's own time for them, the floor of the step as lenet captures it.
This is the measurement issue 13 asks for before a graph-captured step goes into the engine.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from dataclasses import replace


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipes", default="seed,fast")
    parser.add_argument("--steps", type=int, default=500)
    args = parser.parse_args(argv)

    import torch

    if not torch.cuda.is_available():
        print("no CUDA: torch.cuda.is_available() is False; nothing to measure")
        return 0
    from lenet import load_fashion_mnist

    device = torch.device("cuda")
    data = load_fashion_mnist().to(device)
    print(f"{torch.cuda.get_device_name()}; PyTorch {torch.__version__}, CUDA {torch.version.cuda}, "
          f"Python {platform.python_version()}")  # fmt: skip
    print(f"{'recipe':<8} {'batch':>5} {'eager':>8} {'graph':>8} {'whole graph':>12} {'replay only':>12}  (ms per step)")
    for name in args.recipes.split(","):
        times = {mode: timed(name, mode, data, args.steps) for mode in ("eager", "graph", "whole", "replay")}
        print(f"{name:<8} {_batch(name):>5} {times['eager']:>8.3f} {times['graph']:>8.3f} {times['whole']:>12.3f} "
              f"{times['replay']:>12.3f}")  # fmt: skip
    return 0


def _batch(name: str) -> int:
    from lenet import get_recipe

    return get_recipe(name).batch_size


def timed(name: str, mode: str, data, steps: int) -> float:
    """Median ms per step of `mode` over five stretches of `steps` steps."""
    import torch

    from lenet import get_recipe
    from lenet.data.batches import to_float
    from lenet.training.augment import augment
    from lenet.training.engine import Engine, Step, prepare, resolve_precision, training_order
    from lenet.training.build import build_model, build_optimizer, build_schedule

    device = torch.device("cuda")
    recipe = get_recipe(name)
    recipe = replace(recipe, precision=resolve_precision(recipe.precision, device))
    engine = Engine(cuda_graph=mode != "eager")
    torch.manual_seed(0)
    net = prepare(build_model(recipe).net.to(device), engine)
    optimizer = build_optimizer(net, recipe, engine)
    schedule = None if mode == "whole" else build_schedule(optimizer, recipe, 10 * steps)
    step = Step(net, optimizer, schedule, engine, recipe.label_smoothing, recipe.precision)
    images, labels = data.train_images, data.train_labels
    rng = torch.Generator(device=device).manual_seed(1)
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    whole = None

    def one_step() -> None:
        nonlocal whole
        if mode == "replay" and step.graph is not None:
            step.graph.replay()
            return
        idx = torch.randint(0, len(labels), (recipe.batch_size,), device=device, generator=rng)
        x, y = images[idx], labels[idx]
        if recipe.shift or recipe.flip:
            x = augment(x, recipe.shift, recipe.flip, rng)
        x = to_float(x)
        if mode == "whole" and step.graph is not None:
            if whole is None:
                whole = capture_whole(step, optimizer, x, y, recipe.label_smoothing)
            static_x, static_y, loss, logits, graph = whole
            static_x.copy_(x)
            static_y.copy_(y)
            graph.replay()
        else:
            loss, logits = step(x, y)
        loss_sum.add_(loss * len(y))
        correct.add_((logits.argmax(dim=1) == y).sum())

    with training_order(net.train(), engine):
        for _ in range(20):
            one_step()
        results = []
        for _ in range(5):
            torch.cuda.synchronize()
            start = time.perf_counter()
            for _ in range(steps):
                one_step()
            torch.cuda.synchronize()
            results.append((time.perf_counter() - start) * 1000 / steps)
    return statistics.median(results)


def capture_whole(step, optimizer, x, y, label_smoothing: float):
    """One graph of forward, loss, backward and a capturable optimizer step (lr constant)."""
    import torch
    import torch.nn.functional as F

    for group in optimizer.param_groups:
        group["capturable"] = True
    static_x, static_y = x.clone(), y.clone()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # a few capturable steps eagerly first, as PyTorch's examples do
        for _ in range(3):
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(step.forward(static_x), static_y, label_smoothing=label_smoothing).backward()
            optimizer.step()
    torch.cuda.current_stream().wait_stream(side)
    optimizer.zero_grad(set_to_none=True)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        logits = step.forward(static_x)
        loss = F.cross_entropy(logits, static_y, label_smoothing=label_smoothing)
        loss.backward()
        optimizer.step()
    return static_x, static_y, loss.detach(), logits.detach(), graph


if __name__ == "__main__":
    sys.exit(main())
