"""LeNet, as the tutorial writes it, and its variants from the same definition.

`LeNet(LeNetConfig())` is the tutorial's model layer for layer: two rounds of
convolution -> sigmoid -> max-pool, then 256 -> 120 -> 84 -> 10. Every variant in the
registry only changes options of that one definition.

The model takes images scaled to [0, 1] ([N, 1, 28, 28]); a variant that wants
normalised inputs carries its own mean and std, so callers never normalise by hand.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import torch
from torch import nn

from .errors import LenetError

ACTIVATIONS = {"sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "relu": nn.ReLU, "gelu": nn.GELU}
POOLS = {"max": nn.MaxPool2d, "avg": nn.AvgPool2d}


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
    input_mean: float | None = None  # normalise [0, 1] inputs as (x - mean) / std
    input_std: float | None = None
    flip_tta: bool = False  # in eval mode, average the logits of each image and its mirror

    def __post_init__(self) -> None:
        if self.activation not in ACTIVATIONS:
            raise LenetError(f"unknown activation {self.activation!r}; choose from {', '.join(ACTIVATIONS)}")
        if self.pool not in POOLS:
            raise LenetError(f"unknown pooling {self.pool!r}; choose from {', '.join(POOLS)}")
        if self.padding not in (0, 1, 2):
            raise LenetError(f"padding must be 0, 1 or 2, not {self.padding}")
        if min(*self.channels, *self.hidden, self.num_classes) < 1:
            raise LenetError("channels, hidden sizes and num_classes must be positive")
        if not 0.0 <= self.dropout < 1.0:
            raise LenetError(f"dropout must be in [0, 1), not {self.dropout}")
        if (self.input_mean is None) != (self.input_std is None) or (self.input_std is not None and self.input_std <= 0):
            raise LenetError("input_mean and input_std go together, and the std must be positive")

    @property
    def feature_side(self) -> int:
        """Height (= width) of the conv block's output for a 28x28 input: 4, or 5 with padding 2."""
        after_first = (28 + 2 * self.padding - 4) // 2
        return (after_first - 4) // 2

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LeNetConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise LenetError(f"unknown model options: {', '.join(sorted(unknown))}")
        d = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        return cls(**d)


class Normalize(nn.Module):
    def __init__(self, mean: float, std: float):
        super().__init__()
        self.mean, self.std = mean, std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"mean={self.mean}, std={self.std}"


class LeNet(nn.Module):
    def __init__(self, config: LeNetConfig = LeNetConfig()):
        super().__init__()
        self.config = c = config
        act, pool = ACTIVATIONS[c.activation], POOLS[c.pool]
        (c1, c2), (h1, h2) = c.channels, c.hidden
        bn = lambda n: [nn.BatchNorm2d(n)] if c.batch_norm else []  # noqa: E731
        drop = lambda: [nn.Dropout(c.dropout)] if c.dropout else []  # noqa: E731
        self.normalize = Normalize(c.input_mean, c.input_std) if c.input_mean is not None else nn.Identity()
        self.conv = nn.Sequential(
            nn.Conv2d(1, c1, 5, padding=c.padding), *bn(c1),  # in_channels, out_channels, kernel_size
            act(),
            pool(2, 2),  # kernel_size, stride
            nn.Conv2d(c1, c2, 5), *bn(c2),
            act(),
            pool(2, 2),
        )  # fmt: skip
        self.fc = nn.Sequential(
            *drop(), nn.Linear(c2 * c.feature_side**2, h1),
            act(),
            *drop(), nn.Linear(h1, h2),
            act(),
            nn.Linear(h2, c.num_classes),
        )  # fmt: skip

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        if self.config.flip_tta and not self.training:
            both = self.classify(torch.cat([img, img.flip(-1)]))  # one pass over twice the batch
            return both.view(2, len(img), -1).mean(0)
        return self.classify(img)

    def classify(self, img: torch.Tensor) -> torch.Tensor:
        feature = self.conv(self.normalize(img))
        return self.fc(feature.flatten(1))


# --- registry -------------------------------------------------------------------------

MODELS: dict[str, tuple[LeNetConfig, str]] = {
    "lenet": (LeNetConfig(), "the tutorial's LeNet: sigmoid, max-pool, 256-120-84-10 (44,426 parameters)"),
    "lenet5": (
        LeNetConfig(activation="tanh", pool="avg", padding=2),
        "classic LeNet-5: tanh, average pooling, padding 2, 16x5x5 flatten",
    ),
    "lenet_relu": (LeNetConfig(activation="relu"), "the tutorial's LeNet with ReLU"),
    "lenet_bn": (
        LeNetConfig(activation="relu", batch_norm=True, padding=2, input_mean=0.2860, input_std=0.3530),
        "ReLU, batch norm, padding 2, normalised input (61,750 parameters)",
    ),
    "lenet_wide": (
        LeNetConfig(
            activation="relu", batch_norm=True, padding=2, channels=(16, 32), hidden=(96, 64),
            input_mean=0.2860, input_std=0.3530,
        ),  # fmt: skip
        "lenet_bn with 16/32 channels and 96/64 hidden units (97,098 parameters)",
    ),
}


def list_models() -> dict[str, str]:
    return {name: description for name, (_, description) in MODELS.items()}


def model_config(name: str, **overrides: Any) -> LeNetConfig:
    if name not in MODELS:
        raise LenetError(f"unknown model {name!r}; choose from {', '.join(MODELS)}")
    return replace(MODELS[name][0], **overrides)


def create_model(name: str = "lenet", **overrides: Any) -> LeNet:
    """A fresh model from the registry, e.g. create_model("lenet", activation="relu")."""
    return LeNet(model_config(name, **overrides))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@dataclass(frozen=True)
class LayerRow:
    name: str
    kind: str
    output_shape: tuple[int, ...]
    parameters: int


def summarize(model: nn.Module, batch_size: int = 64) -> list[LayerRow]:
    """Every leaf layer's output shape and parameter count, for a [batch, 1, 28, 28] input."""
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
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(batch_size, 1, 28, 28, device=device))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return rows
