"""Many models in one pass: N LeNets of one architecture trained together (torch.func vmap over
stacked weights) against the same N trained one after another, side by side in one run.

    python -m benchmarks.many_models [--device auto] [--models 10] [--recipe seed] [--steps 200]

Each model keeps its own initialisation (seed k), its own shuffling and its own batches; the
measure is optimisation steps per second for all N together, and the ratio of the two modes.
This is a probe (issue 13): lenet builds the mode into --seeds only on a measured gain of 5x.
Prints the hardware and versions beside the figures.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import time

import torch
import torch.nn.functional as F


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def sequential(nets, opts, images, labels, batches) -> float:
    start = time.perf_counter()
    for net, opt, order in zip(nets, opts, batches):
        for idx in order:
            loss = F.cross_entropy(net(images[idx].float().div_(255)), labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    _sync(images.device)
    return time.perf_counter() - start


def together(nets, images, labels, batches, lr: float) -> float:
    from torch.func import functional_call, grad, stack_module_state, vmap

    params, buffers = stack_module_state(nets)
    base = copy.deepcopy(nets[0]).to("meta")

    def loss_of(p, b, x, y):
        return F.cross_entropy(functional_call(base, (p, b), (x,)), y)

    step_grad = vmap(grad(loss_of), in_dims=(0, 0, 0, 0))
    opt = torch.optim.Adam(list(params.values()), lr=lr)
    start = time.perf_counter()
    for step in range(len(batches[0])):
        idx = torch.stack([b[step] for b in batches])  # [N, batch]: each model its own images
        x, y = images[idx].float().div_(255), labels[idx]
        grads = step_grad(params, buffers, x, y)
        for name, p in params.items():
            p.grad = grads[name]
        opt.step()
    _sync(images.device)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    from lenet.data.load import load_dataset
    from lenet.core.device import describe, resolve_device
    from lenet.training.recipes import get_recipe
    from lenet.training.build import build_model

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--models", type=int, default=10)
    parser.add_argument("--recipe", default="seed")
    parser.add_argument("--steps", type=int, default=200, help="optimisation steps per model")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    recipe = get_recipe(args.recipe)
    data = load_dataset().to(device)
    images, labels = data.train_images, data.train_labels

    def fresh():
        nets = []
        for k in range(args.models):
            torch.manual_seed(k)
            nets.append(build_model(recipe, data.spec).net.to(device))
        return nets

    batches = [torch.randperm(len(labels), generator=torch.Generator().manual_seed(k))[: args.steps * recipe.batch_size]
               .view(args.steps, recipe.batch_size).to(device) for k in range(args.models)]  # fmt: skip
    nets = fresh()
    opts = [torch.optim.Adam(n.parameters(), lr=recipe.lr) for n in nets]
    sequential(nets, opts, images, labels, [b[:5] for b in batches])  # warm-up
    nets = fresh()
    opts = [torch.optim.Adam(n.parameters(), lr=recipe.lr) for n in nets]
    t_seq = sequential(nets, opts, images, labels, batches)
    together(fresh(), images, labels, [b[:5] for b in batches], recipe.lr)  # warm-up
    t_vmap = together(fresh(), images, labels, batches, recipe.lr)
    steps = args.models * args.steps
    result = {
        "hardware": describe(device), "platform": platform.platform(), "torch": torch.__version__,
        "recipe": args.recipe, "models": args.models, "batch": recipe.batch_size, "steps_per_model": args.steps,
        "sequential_steps_per_s": steps / t_seq, "together_steps_per_s": steps / t_vmap, "ratio": t_seq / t_vmap,
    }  # fmt: skip
    print(json.dumps(result))
    print(f"{args.models} x {args.recipe} on {result['hardware']}: one after another {steps / t_seq:,.0f} steps/s, "
          f"together (vmap) {steps / t_vmap:,.0f} steps/s: {t_seq / t_vmap:.2f}x")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
