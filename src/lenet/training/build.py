"""What a recipe builds: the model with its test-time views, the optimizer and the schedule."""

from __future__ import annotations

import torch
from torch import nn

from lenet.data.batches import to_float
from lenet.data.registry import DataSpec
from lenet.models.lenet import LeNet, LeNetConfig, model_config
from lenet.models.views import Classifier, Views
from lenet.models.whitening import freeze_whitened
from lenet.core.errors import LenetError
from lenet.training.engine import Engine, make_optimizer
from lenet.training.recipes import WHITEN_EPS, WHITEN_IMAGES, Recipe


def recipe_model_config(recipe: Recipe, data: DataSpec | None = None) -> LeNetConfig:
    return model_config(recipe.model, data, norm_momentum=recipe.bn_momentum, norm_eps=recipe.bn_eps)


def recipe_views(recipe: Recipe) -> Views:
    return Views(flip=recipe.test_flip, shift=recipe.test_shift)


def build_model(recipe: Recipe, data: DataSpec | None = None, train_images: torch.Tensor | None = None) -> Classifier:
    """The recipe's network for a data set (its classes and, where it normalises, its statistics) and views,
    its weights drawn by the recipe's initialisation from the global generator (seed it first); with
    `whiten`, its first convolution then set from `train_images`' patches (uint8, the training split) and frozen."""
    net = LeNet(recipe_model_config(recipe, data))
    initialise(net, recipe.init)
    if recipe.whiten:
        if train_images is None:
            raise LenetError("a recipe with whiten needs the training images to build its model")
        freeze_whitened(net.conv[0], net.normalize, to_float(train_images[:WHITEN_IMAGES].cpu()), WHITEN_EPS)
    return Classifier(net, recipe_views(recipe), data)


def initialise(net: nn.Module, init: str) -> None:
    """Redraw the convolution and linear weights by `init`; "pytorch" keeps the layers' own draw."""
    if init == "pytorch":
        return
    for layer in net.modules():
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            if init == "kaiming":
                nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
            else:
                nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)


def build_optimizer(net: nn.Module, recipe: Recipe, engine: Engine = Engine()) -> torch.optim.Optimizer:
    params = parameter_groups(net, recipe)
    if recipe.optimizer == "sgd":
        return make_optimizer(torch.optim.SGD, params, engine, lr=recipe.lr, momentum=recipe.momentum,
                              dampening=recipe.dampening, nesterov=recipe.nesterov)  # fmt: skip
    factory = torch.optim.Adam if recipe.optimizer == "adam" else torch.optim.AdamW
    return make_optimizer(factory, params, engine, lr=recipe.lr, betas=recipe.betas, eps=recipe.eps,
                          amsgrad=recipe.amsgrad)  # fmt: skip


def parameter_groups(net: nn.Module, recipe: Recipe) -> list[dict]:
    """One group decayed by the recipe's weight decay; biases and norm scales apart unless they decay too."""
    trained = [p for p in net.parameters() if p.requires_grad]  # a frozen layer (whiten) is not the optimizer's
    if recipe.decay_norm_and_bias:
        return [{"params": trained, "weight_decay": recipe.weight_decay}]
    weights = [p for p in trained if p.dim() > 1]
    flat = [p for p in trained if p.dim() <= 1]  # biases, batch-norm scales and shifts
    return [{"params": weights, "weight_decay": recipe.weight_decay}, {"params": flat, "weight_decay": 0.0}]


def steps_per_epoch(train_images: int, batch_size: int) -> int:
    return -(-train_images // batch_size)  # the last batch may be smaller


def check_schedule(recipe: Recipe, train_images: int) -> None:
    """Refuse what build_schedule would, knowing only the recipe and how many images it trains on (after any
    validation hold-out): `lenet train` and every planned configuration of a sweep ask before training."""
    _check_steps(recipe, recipe.epochs * steps_per_epoch(train_images, recipe.batch_size))


def _check_steps(recipe: Recipe, total_steps: int) -> None:
    if recipe.schedule == "onecycle" and recipe.warmup * total_steps == 1:  # OneCycleLR divides by (warm-up steps - 1)
        raise LenetError(f"onecycle's warm-up is {recipe.warmup:.0%} of {total_steps} steps, exactly one step, "
                         "which PyTorch's OneCycleLR cannot do; train more steps or use --schedule constant")  # fmt: skip


def build_schedule(optimizer: torch.optim.Optimizer, recipe: Recipe, total_steps: int):
    _check_steps(recipe, total_steps)
    if recipe.schedule == "onecycle":
        low, high = recipe.momentum_range
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=recipe.lr, total_steps=total_steps, pct_start=recipe.warmup,
            div_factor=recipe.onecycle_start_div, final_div_factor=recipe.onecycle_end_div,
            cycle_momentum=recipe.cycle_momentum, base_momentum=low, max_momentum=high,
            anneal_strategy=recipe.anneal_strategy, three_phase=recipe.three_phase,
        )  # fmt: skip
    if recipe.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps, eta_min=recipe.cosine_min_lr)
    return None
