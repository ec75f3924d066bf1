"""What a run carries from epoch to epoch (`TrainState`), and how it starts and is restored.

A resume restores all of it from train_state.pt: weights (and their moving average, when the recipe
keeps one), optimizer and schedule states, the shuffling and augmentation generators, the global CPU
generator and, on CUDA, the device's own generator. On the CPU that makes a resumed run bit-identical to an uninterrupted one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from lenet.core.errors import CheckpointError
from lenet.models.lenet import LeNet
from lenet.runs.metrics import EpochMetrics
from lenet.runs.state import RngStates, TrainStateRecord
from lenet.training.augment import alternating_half
from lenet.training.build import build_optimizer, build_schedule
from lenet.training.config import TrainConfig
from lenet.training.ema import WeightAverage
from lenet.training.recipes import AUGMENT_SEED_OFFSET, FLIP_SEED_OFFSET


@dataclass
class TrainState:
    """Everything a run needs to go on after its last completed epoch, bit for bit."""

    net: LeNet
    optimizer: torch.optim.Optimizer
    schedule: object | None
    shuffle: torch.Generator
    augment_rng: torch.Generator
    # The images mirrored in odd epochs under alternating flips (None: fresh coins); drawn from the
    # seed alone, so it is not saved: a resumed run draws it again.
    flip_half: torch.Tensor | None = None
    ema: WeightAverage | None = None  # the weights' moving average (recipe's ema_decay), the model when on
    epoch: int = 0
    history: list[EpochMetrics] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    train_seconds: float = 0.0

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    def to_record(self) -> TrainStateRecord:
        cuda = torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None
        rng = RngStates(shuffle=self.shuffle.get_state(), augment=self.augment_rng.get_state(),
                        torch=torch.get_rng_state(), cuda=cuda)  # fmt: skip
        return TrainStateRecord(
            epoch=self.epoch, model=self.net.state_dict(), optimizer=self.optimizer.state_dict(),
            schedule=self.schedule.state_dict() if self.schedule is not None else None, rng=rng,
            history=list(self.history), warnings=list(self.warnings), train_seconds=self.train_seconds,
            ema=self.ema.state_dict() if self.ema is not None else None,
        )  # fmt: skip

    def restore(self, saved: TrainStateRecord) -> None:
        """Everything in `saved` (checked by its schema) back into this state; what does not fit this run's
        config (other shapes, another optimizer) is one CheckpointError."""
        try:
            self.net.load_state_dict(saved.model)
            self.optimizer.load_state_dict(saved.optimizer)
            if self.schedule is not None:
                self.schedule.load_state_dict(saved.schedule)
            self.shuffle.set_state(saved.rng.shuffle)
            # Generator.set_state takes a CPU byte tensor whatever the generator's device (CUDA's refuses others).
            self.augment_rng.set_state(saved.rng.augment.cpu())
            torch.set_rng_state(saved.rng.torch_)
            if saved.rng.cuda is not None and self.device.type == "cuda":
                torch.cuda.set_rng_state(saved.rng.cuda, self.device)
            if self.ema is not None:
                self.ema.load_state_dict(saved.ema)
        except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as e:
            raise CheckpointError(f"the saved training state does not fit this run's config ({e})") from None
        self.history = list(saved.history)
        self.epoch, self.warnings, self.train_seconds = saved.epoch, list(saved.warnings), saved.train_seconds


def start_state(config: TrainConfig, net: LeNet, train_size: int, steps_per_epoch: int,
                device: torch.device) -> TrainState:  # fmt: skip
    """A run's state before its first epoch: fresh optimizer and schedule, generators seeded from the seed."""
    recipe, seed = config.recipe, config.seed
    optimizer = build_optimizer(net, recipe, config.engine)
    schedule = build_schedule(optimizer, recipe, recipe.epochs * steps_per_epoch)
    shuffle = torch.Generator().manual_seed(seed)
    augment_rng = torch.Generator(device=device).manual_seed(seed + AUGMENT_SEED_OFFSET)
    flip_half = None
    if recipe.flip and recipe.alternate_flips:
        flip_half = alternating_half(train_size, seed + FLIP_SEED_OFFSET, device)
    # The average starts from the network as it is now: call this after engine.prepare, so that it
    # keeps the network's memory format.
    ema = WeightAverage(net, recipe.ema_decay) if recipe.ema_decay else None
    return TrainState(net, optimizer, schedule, shuffle, augment_rng, flip_half, ema)
