"""LeNet, as the tutorial writes it, and its variants from the same definition.

`LeNet(LeNetConfig())` is the tutorial's model layer for layer: two rounds of
convolution -> sigmoid -> max-pool, then 256 -> 120 -> 84 -> 10. Every variant in the
registry only changes options of that one definition.

The model takes images scaled to [0, 1], [N, C, S, S]: the tutorial's [N, 1, 28, 28] by default, any
channels (1 grey, 3 RGB) and side the data has otherwise (`model_config` fits them to a data set; the
first fully connected layer's width is computed from the side). A variant that wants normalised inputs
carries its own mean and std (one per channel for colour), so callers never normalise by hand.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, NamedTuple

import torch
from torch import nn

from lenet.data.registry import (
    CHANNELS,
    IMAGE_SIZE,
    MAX_CLASSES,
    MAX_IMAGE_SIZE,
    MIN_IMAGE_SIZE,
    DataSpec,
    default_spec,
)
from lenet.core.errors import LenetError, UsageError, short_repr

ACTIVATIONS = {"sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "relu": nn.ReLU, "gelu": nn.GELU}
POOLS = {"max": nn.MaxPool2d, "avg": nn.AvgPool2d}
# Bounds on a config, so that one read from a file cannot ask for unbounded memory. The
# largest registry model (the teacher lenet_48x96_pn) has 1,480,042 parameters; these allow far bigger ones.
MAX_WIDTH = 4096  # channels of a convolution, units of a hidden layer
MAX_PARAMETERS = 50_000_000  # 200 MB of float32 weights
MAX_SHIFT = 8  # pixels: the largest move of an image, in training or at test time


@dataclass(frozen=True)
class LeNetConfig:
    activation: str = "sigmoid"
    pool: str = "max"
    batch_norm: bool = False
    padding: int = 0  # of the first convolution; 2 gives the classic LeNet-5 16x5x5 flatten
    channels: tuple[int, int] = (6, 16)
    hidden: tuple[int, int] = (120, 84)
    num_classes: int = 10
    dropout: float = 0.0  # before each hidden fully connected layer
    # Max-pool straight after each convolution, then batch norm and the activation: batch norm
    # sees a quarter of the values (its statistics are the pooled maps', so this is another model).
    norm_after_pool: bool = False
    # Normalise [0, 1] inputs as (x - mean) / std: one number for every channel, or one per channel.
    input_mean: float | tuple[float, ...] | None = None
    input_std: float | tuple[float, ...] | None = None
    # Batch norm's own numbers, PyTorch's defaults written out: eps changes every prediction, so it
    # travels with the weights; momentum (how fast the running statistics follow a batch's) with it.
    norm_momentum: float = 0.1
    norm_eps: float = 1e-5
    in_channels: int = 1  # of the input: 1 grey, 3 RGB
    image_size: int = IMAGE_SIZE  # the input's side S; MIN_IMAGE_SIZE leaves a 1x1 map after the convolutions

    def __post_init__(self) -> None:
        # Every field is checked for type and range here, so a config read from a file
        # (a checkpoint's metadata) can never build an absurd or unbuildable model.
        for name in ("input_mean", "input_std"):
            if isinstance(getattr(self, name), list):
                object.__setattr__(self, name, tuple(getattr(self, name)))
        if isinstance(self.in_channels, bool) or self.in_channels not in CHANNELS:
            raise LenetError(f"in_channels must be 1 or 3, not {short_repr(self.in_channels)}")
        _check_int("image_size", self.image_size, MIN_IMAGE_SIZE, MAX_IMAGE_SIZE)
        for name in ("channels", "hidden"):
            value = getattr(self, name)
            if isinstance(value, list):
                object.__setattr__(self, name, value := tuple(value))
            if not isinstance(value, tuple) or len(value) != 2:
                raise LenetError(f"{name} must be a pair of layer sizes, not {short_repr(value)}")
            for size in value:
                _check_int(name, size, 1, MAX_WIDTH)
        _check_int("num_classes", self.num_classes, 1, MAX_CLASSES)
        _check_int("padding", self.padding, 0, 2)
        for name in ("activation", "pool"):
            choices = ACTIVATIONS if name == "activation" else POOLS
            if not isinstance(getattr(self, name), str) or getattr(self, name) not in choices:
                raise LenetError(f"unknown {name} {short_repr(getattr(self, name))}; choose from {', '.join(choices)}")
        for name in ("batch_norm", "norm_after_pool"):
            if not isinstance(getattr(self, name), bool):
                raise LenetError(f"{name} must be true or false, not {short_repr(getattr(self, name))}")
        if not _is_real(self.dropout) or not 0.0 <= self.dropout < 1.0:
            raise LenetError(f"dropout must be in [0, 1), not {short_repr(self.dropout)}")
        if not _is_real(self.norm_momentum) or not 0.0 <= self.norm_momentum <= 1.0:
            raise LenetError(f"norm_momentum must be in [0, 1], not {short_repr(self.norm_momentum)}")
        if not _is_real(self.norm_eps) or not 0.0 < self.norm_eps <= 1.0:
            raise LenetError(f"norm_eps must be in (0, 1], not {short_repr(self.norm_eps)}")
        mean, std = self.input_mean, self.input_std
        if (mean is None) != (std is None) or (std is not None and not (_per_channel(mean, self.in_channels)
                                                                        and _per_channel(std, self.in_channels)
                                                                        and min(_as_tuple(std)) > 0)):  # fmt: skip
            raise LenetError("input_mean and input_std go together, and are finite numbers (one, or one per input "
                             "channel) with a positive std")  # fmt: skip
        if self.parameter_count > MAX_PARAMETERS:
            raise LenetError(f"a model of {self.parameter_count:,} parameters is over the limit of {MAX_PARAMETERS:,}")

    @property
    def parameter_count(self) -> int:
        """The number of parameters LeNet(self) has, computed without building it."""
        (c1, c2), (h1, h2) = self.channels, self.hidden
        conv = (25 * self.in_channels + 1) * c1 + (25 * c1 + 1) * c2 + (2 * (c1 + c2) if self.batch_norm else 0)
        fc = (c2 * self.feature_side**2 + 1) * h1 + (h1 + 1) * h2 + (h2 + 1) * self.num_classes
        return conv + fc

    @property
    def feature_side(self) -> int:
        """Height (= width) of the conv block's output: for a 28x28 input 4, or 5 with padding 2; for 32x32, 5."""
        after_first = (self.image_size + 2 * self.padding - 4) // 2
        return (after_first - 4) // 2

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LeNetConfig:
        if not isinstance(d, dict):
            raise LenetError(f"a model config is a mapping of options, not {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise LenetError(f"unknown model options: {', '.join(sorted(map(short_repr, unknown)))}")
        return cls(**d)


def _check_int(name: str, value: Any, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise LenetError(f"{name} must be a whole number from {low} to {high}, not {short_repr(value)}")


def _as_tuple(value: float | tuple[float, ...]) -> tuple[float, ...]:
    return value if isinstance(value, tuple) else (value,)


def _per_channel(value: Any, channels: int) -> bool:
    """A finite number, or a tuple of one for each of `channels` channels."""
    return _is_real(value) or (isinstance(value, tuple) and len(value) == channels and all(map(_is_real, value)))


def _is_real(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


class Normalize(nn.Module):
    """(x - mean) / std, by one number for all channels or one per channel."""

    def __init__(self, mean: float | tuple[float, ...], std: float | tuple[float, ...]):
        super().__init__()
        self.mean, self.std = mean, std
        self.per_channel = isinstance(mean, tuple) or isinstance(std, tuple)
        if self.per_channel:
            # Buffers, so they follow the model to its device; not in the state dict, which the config rebuilds.
            self.register_buffer("channel_mean", torch.tensor(_as_tuple(mean)).view(1, -1, 1, 1), persistent=False)
            self.register_buffer("channel_std", torch.tensor(_as_tuple(std)).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.per_channel:
            return (x - self.channel_mean) / self.channel_std
        return (x - self.mean) / self.std  # a Python number, as before colour: grey runs keep their exact floats

    def extra_repr(self) -> str:
        return f"mean={self.mean}, std={self.std}"


class LeNet(nn.Module):
    def __init__(self, config: LeNetConfig = LeNetConfig()):
        super().__init__()
        self.config = c = config
        act, pool = ACTIVATIONS[c.activation], POOLS[c.pool]
        (c1, c2), (h1, h2) = c.channels, c.hidden
        bn = lambda n: [nn.BatchNorm2d(n, eps=c.norm_eps, momentum=c.norm_momentum)] if c.batch_norm else []  # noqa: E731
        drop = lambda: [nn.Dropout(c.dropout)] if c.dropout else []  # noqa: E731

        def block(conv: nn.Conv2d) -> list[nn.Module]:
            """conv -> [batch norm] -> activation -> pool as the tutorial; conv -> pool -> [batch norm] -> activation
            with norm_after_pool."""
            normalised = [*bn(conv.out_channels), act()]
            pooling = pool(2, 2)  # kernel_size, stride
            return [conv, pooling, *normalised] if c.norm_after_pool else [conv, *normalised, pooling]

        self.normalize = Normalize(c.input_mean, c.input_std) if c.input_mean is not None else nn.Identity()
        self.conv = nn.Sequential(
            *block(nn.Conv2d(c.in_channels, c1, 5, padding=c.padding)),  # in_channels, out_channels, kernel_size
            *block(nn.Conv2d(c1, c2, 5)),
        )
        self.fc = nn.Sequential(
            *drop(), nn.Linear(c2 * c.feature_side**2, h1),
            act(),
            *drop(), nn.Linear(h1, h2),
            act(),
            nn.Linear(h2, c.num_classes),
        )  # fmt: skip

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        feature = self.conv(self.normalize(img))
        return self.fc(feature.flatten(1))


# --- registry -------------------------------------------------------------------------


class ModelEntry(NamedTuple):
    """A registered model: its config (for Fashion-MNIST; `model_config` fits it to other data), what it is,
    whether it normalises its input by the data set's own mean and std (filled in from the data), and the
    input (channels, side) it was made for, which `lenet models` and `lenet summary` show it on."""

    config: LeNetConfig
    description: str
    normalised: bool = False
    made_for: tuple[int, int] = (1, IMAGE_SIZE)


# Batch-norm variants normalise their input by the training data's mean and std, which
# model_config fills in from the data set (ModelEntry.normalised); these placeholders are never used.
_BN = LeNetConfig(activation="relu", batch_norm=True, padding=2, input_mean=0.0, input_std=1.0)

# Every model takes the data's channels and side (`model_config`): on CIFAR-10 or a colour folder each is
# its own colour variant, with a first convolution over three channels.
MODELS: dict[str, ModelEntry] = {
    "lenet": ModelEntry(LeNetConfig(), "the tutorial's LeNet: sigmoid, max-pool, 256-120-84-10"),
    "lenet5": ModelEntry(
        LeNetConfig(activation="tanh", pool="avg", padding=2),
        "classic LeNet-5: tanh, average pooling, padding 2, 16x5x5 flatten",
    ),
    "lenet_relu": ModelEntry(LeNetConfig(activation="relu"), "the tutorial's LeNet with ReLU"),
    # pytorch.org's "Training a classifier" (CIFAR-10): its transform scales [0, 1] pixels to [-1, 1] by
    # Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)), a fixed 0.5 for every channel, not the data's own.
    "lenet_cifar": ModelEntry(
        LeNetConfig(activation="relu", input_mean=0.5, input_std=0.5),
        "pytorch.org's classifier tutorial's net: ReLU, max-pool, (x - 0.5) / 0.5, 400-120-84-10",
        made_for=(3, 32),  # CIFAR-10's
    ),
    "lenet_bn": ModelEntry(_BN, "ReLU, batch norm, padding 2, normalised input", normalised=True),
    "lenet_wide": ModelEntry(
        replace(_BN, channels=(16, 32), hidden=(96, 64)),
        "lenet_bn with 16/32 channels and 96/64 hidden units",
        normalised=True,
    ),
    "lenet_wide_pn": ModelEntry(
        replace(_BN, channels=(16, 32), hidden=(96, 64), norm_after_pool=True),
        "lenet_wide with each max-pool before its batch norm: a quarter of the values to normalise",
        normalised=True,
    ),
    "lenet_32x48": ModelEntry(
        replace(_BN, channels=(32, 48), hidden=(48, 32)),
        "lenet_bn with 32/48 channels and 48/32 hidden units: the budget in the convolutions",
        normalised=True,
    ),
    "lenet_32x48_pn": ModelEntry(
        replace(_BN, channels=(32, 48), hidden=(48, 32), norm_after_pool=True),
        "lenet_32x48 with each max-pool before its batch norm: a quarter of the values to normalise",
        normalised=True,
    ),
    # Over the 100k budget on purpose: a teacher for distillation (recipe field `teacher`). Its
    # parameters sit mostly in the first hidden layer, so its step costs about three of lenet_32x48_pn's
    # (13.8 M multiply-adds per image against 4.5 M), not the fifteen its parameter count suggests.
    "lenet_48x96_pn": ModelEntry(
        replace(_BN, channels=(48, 96), hidden=(512, 256), norm_after_pool=True),
        "a teacher for distillation: 48/96 channels and 512/256 hidden units, each max-pool before its batch norm",
        normalised=True,
    ),
}


def list_models() -> dict[str, str]:
    """Each model's description, with its parameters on the input it was made for."""
    return {name: f"{entry.description} ({made_for_config(name).parameter_count:,} parameters on "
                  f"{entry.made_for[0]}x{entry.made_for[1]}x{entry.made_for[1]})" for name, entry in MODELS.items()}  # fmt: skip


def made_for_config(name: str, **overrides: Any) -> LeNetConfig:
    """A registry config on the input its model was made for (1x28x28, or CIFAR-10's 3x32x32), ten classes."""
    channels, side = MODELS[name].made_for if name in MODELS else (1, IMAGE_SIZE)
    return model_config(name, **{"in_channels": channels, "image_size": side, **overrides})


NORMALISED = {name for name, entry in MODELS.items() if entry.normalised}


def model_config(name: str, data: DataSpec | None = None, **overrides: Any) -> LeNetConfig:
    """A registry config for a data set (default: Fashion-MNIST): its class count, its images' channels and
    side and, for the models that normalise their input, its pixel mean and std (one per channel in colour).

    Example:
        >>> model_config("lenet").image_size
        28
    """
    if name not in MODELS:
        raise UsageError(f"unknown model {name!r}; choose from {', '.join(MODELS)}")
    data = data or default_spec()
    fitted: dict[str, Any] = {"num_classes": len(data.classes), "in_channels": data.channels,
                              "image_size": data.image_size}  # fmt: skip
    if MODELS[name].normalised:
        fitted.update(input_mean=data.mean, input_std=data.std)
    return replace(MODELS[name].config, **{**fitted, **overrides})


def create_model(name: str = "lenet", data: DataSpec | None = None, **overrides: Any) -> LeNet:
    """A fresh model from the registry, e.g. create_model("lenet", activation="relu")."""
    return LeNet(model_config(name, data, **overrides))


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """The model in eval mode within the block, in the mode it had before after it, whatever happens."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@dataclass(frozen=True)
class LayerRow:
    name: str
    kind: str
    output_shape: tuple[int, ...]
    parameters: int


def summarize(model: LeNet, batch_size: int = 64) -> list[LayerRow]:
    """Every leaf layer's output shape and parameter count, for a [batch, C, S, S] input (the model's own)."""
    rows: list[LayerRow] = []
    hooks = [
        module.register_forward_hook(
            lambda m, _inp, out, name=name: rows.append(
                LayerRow(name, type(m).__name__, tuple(out.shape), sum(p.numel() for p in m.parameters()))
            )
        )
        for name, module in model.named_modules()
        if not list(module.children()) and not isinstance(module, nn.Identity)
    ]
    device = next(model.parameters()).device
    try:
        with eval_mode(model), torch.no_grad():
            c = model.config
            model(torch.zeros(batch_size, c.in_channels, c.image_size, c.image_size, device=device))
    finally:
        for h in hooks:
            h.remove()
    return rows
