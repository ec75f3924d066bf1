"""The training loop: data resident on the device, index-slice batches, one run directory."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from . import runs
from .checkpoint import save_model
from .data import FashionMNIST, batch_indices, load_fashion_mnist, to_float
from .device import describe, resolve_device
from .metrics import Evaluation, evaluate
from .models import LeNet, count_parameters, model_config
from .recipes import Recipe, get_recipe


@dataclass(frozen=True)
class TrainConfig:
    """What a run needs beyond its recipe: where, on what, and with which seed."""

    recipe: Recipe = field(default_factory=lambda: get_recipe("default"))
    recipe_name: str = "default"
    seed: int = 0
    device: str = "auto"
    data_dir: str | None = None
    out: str = "runs"
    name: str | None = None  # run directory name; a fresh one is made up when None
    save: bool = True  # write the run directory
    progress: bool = True  # a progress bar on a terminal


@dataclass
class RunResult:
    model: LeNet
    history: list[runs.EpochMetrics]
    final: Evaluation
    run_dir: Path | None
    train_seconds: float


def build_optimizer(model: nn.Module, recipe: Recipe) -> torch.optim.Optimizer:
    params = model.parameters()
    if recipe.optimizer == "adam":
        return torch.optim.Adam(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    if recipe.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    return torch.optim.SGD(params, lr=recipe.lr, momentum=recipe.momentum, nesterov=True, weight_decay=recipe.weight_decay)


def build_schedule(optimizer: torch.optim.Optimizer, recipe: Recipe, total_steps: int):
    if recipe.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=recipe.lr, total_steps=total_steps, pct_start=recipe.warmup
        )
    if recipe.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    return None


def train(
    config: TrainConfig = TrainConfig(),
    data: FashionMNIST | None = None,
    on_epoch: Callable[[runs.EpochMetrics], None] | None = None,
) -> RunResult:
    """Train one model by `config`; evaluate on the test set after every epoch."""
    recipe = config.recipe
    device = resolve_device(config.device)
    data = (data or load_fashion_mnist(config.data_dir)).to(device)
    run_dir = _start_run_dir(config, data, device) if config.save else None

    torch.manual_seed(config.seed)
    model = LeNet(model_config(recipe.model)).to(device)
    optimizer = build_optimizer(model, recipe)
    steps_per_epoch = -(-len(data.train_labels) // recipe.batch_size)
    schedule = build_schedule(optimizer, recipe, recipe.epochs * steps_per_epoch)
    shuffle = torch.Generator().manual_seed(config.seed)

    history: list[runs.EpochMetrics] = []
    train_seconds = 0.0
    for epoch in range(1, recipe.epochs + 1):
        lr = optimizer.param_groups[0]["lr"]
        start = time.perf_counter()
        loss_sum, correct = _train_epoch(model, optimizer, schedule, data, recipe, shuffle, device, config.progress, epoch)
        seconds = time.perf_counter() - start
        train_seconds += seconds
        start = time.perf_counter()
        test = evaluate(model, data.test_images, data.test_labels, recipe.eval_batch_size)
        n = len(data.train_labels)
        row = runs.EpochMetrics(
            epoch=epoch, train_loss=loss_sum / n, train_accuracy=correct / n,
            test_loss=test.loss, test_accuracy=test.accuracy, seconds=seconds,
            images_per_s=n / seconds, eval_seconds=time.perf_counter() - start, lr=lr,
        )  # fmt: skip
        history.append(row)
        if run_dir is not None:
            runs.write_metrics(run_dir, history)
            save_model(model, runs.weights_path(run_dir), {"epoch": str(epoch)})
        if on_epoch is not None:
            on_epoch(row)

    if run_dir is not None:
        runs.write_summary(run_dir, _summary(model, test, history, train_seconds))
    return RunResult(model.eval(), history, test, run_dir, train_seconds)


def _train_epoch(model, optimizer, schedule, data, recipe, generator, device, progress, epoch) -> tuple[float, int]:
    model.train()
    n = len(data.train_labels)
    # Sums stay on the device so the step never waits for the host.
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    batches = batch_indices(n, recipe.batch_size, shuffle=True, generator=generator, device=device)
    bar = _progress_bar(progress, -(-n // recipe.batch_size), epoch, recipe.epochs)
    for idx in batches:
        x, y = to_float(data.train_images[idx]), data.train_labels[idx]
        logits = model(x)
        loss = F.cross_entropy(logits, y, label_smoothing=recipe.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if schedule is not None:
            schedule.step()
        loss_sum += loss.detach() * len(idx)
        correct += (logits.argmax(dim=1) == y).sum()
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return loss_sum.item(), int(correct.item())


def _progress_bar(enabled: bool, total: int, epoch: int, epochs: int):
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    # disable=None: only on a terminal, so logs and CI output stay clean.
    return tqdm(total=total, desc=f"epoch {epoch}/{epochs}", unit="batch", leave=False, disable=None)


def _start_run_dir(config: TrainConfig, data: FashionMNIST, device: torch.device) -> Path:
    name = config.name or runs.default_run_name(config.recipe_name, config.seed, config.out)
    run_dir = runs.create_run_dir(config.out, name)
    recipe = config.recipe
    runs.write_config(
        run_dir,
        {
            "recipe_name": config.recipe_name,
            "recipe": recipe.to_dict(),
            "model_config": model_config(recipe.model).to_dict(),
            "seed": config.seed,
            "device": str(device),
            "device_name": describe(device),
            "data": {"source": data.source, "sha256": data.sha256},
            "environment": runs.environment(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
    )
    return run_dir


def _summary(model: LeNet, test: Evaluation, history: list[runs.EpochMetrics], train_seconds: float) -> dict:
    return {
        "model": model.config.to_dict(),
        "parameters": count_parameters(model),
        "epochs": len(history),
        "train_seconds": train_seconds,
        "final_train_loss": history[-1].train_loss,
        "final_train_accuracy": history[-1].train_accuracy,
        "test": test.to_dict(),
    }
