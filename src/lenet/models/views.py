"""Test-time views: a trained network's prediction averaged over moved and mirrored copies of each image.

`LeNet` is one pass of the network and nothing else, so hooks, summaries and analyses see each
layer once. The views wrap it: `Classifier(net, Views(flip=True, shift=1))` averages the logits
of ten views (the image, moved one pixel up, down, left and right, and the mirrors of those
five). Everything that predicts (eval, predict, export, serve, the final figures of a run) goes
through a `Classifier`; the checkpoint records the views beside the network's config.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lenet.data.registry import DataSpec, default_spec
from lenet.core.errors import LenetError, short_repr
from lenet.core.text import plural
from lenet.models.lenet import MAX_SHIFT, LeNet


@dataclass(frozen=True)
class Views:
    flip: bool = False  # also the mirror of every view
    shift: int = 0  # also the image moved this many pixels up, down, left and right (zero fill)

    def __post_init__(self) -> None:
        if not isinstance(self.flip, bool):
            raise LenetError(f"flip must be true or false, not {short_repr(self.flip)}")
        if isinstance(self.shift, bool) or not isinstance(self.shift, int) or not 0 <= self.shift <= MAX_SHIFT:
            raise LenetError(f"shift must be a whole number from 0 to {MAX_SHIFT}, not {short_repr(self.shift)}")

    @property
    def count(self) -> int:
        return (5 if self.shift else 1) * (2 if self.flip else 1)

    def describe(self) -> str:
        return "the image alone" if self.count == 1 else f"{self.count} views: {self.which()}"

    def which(self) -> str:
        """The views in words: "the image and its mirror"."""
        views = "the image" + (f" and the image moved {plural(self.shift, 'pixel')} up, down, left and right"
                               if self.shift else "")  # fmt: skip
        mirrors = (", and their mirrors" if self.shift else " and its mirror") if self.flip else ""
        return f"{views}{mirrors}" if self.count > 1 else "the image alone"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Views:
        if not isinstance(d, dict) or set(d) - {"flip", "shift"}:
            raise LenetError(f"test-time views are a mapping of flip and shift, not {short_repr(d)}")
        return cls(**d)


class Classifier(nn.Module):
    """A network, its test-time views and the data set it knows: logits averaged over the views
    in eval mode, and `data.classes` naming its outputs.

    In training mode it is the network alone, so a Classifier can be trained like its net.
    """

    def __init__(self, net: LeNet, views: Views = Views(), data: DataSpec | None = None):
        super().__init__()
        self.net, self.views, self.data = net, views, data or _unnamed_data(net.config.num_classes)
        if len(self.data.classes) != net.config.num_classes:
            raise LenetError(f"{self.data.name} has {len(self.data.classes)} classes; "
                             f"the network has {net.config.num_classes} outputs")  # fmt: skip

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        if self.training or self.views.count == 1:
            return self.net(img)
        # One view (and its mirror) per pass, so that memory stays that of a single pass.
        return torch.stack([self._mirror_averaged(view) for view in shifted_views(img, self.views.shift)]).mean(0)

    def _mirror_averaged(self, img: torch.Tensor) -> torch.Tensor:
        if not self.views.flip:
            return self.net(img)
        both = self.net(torch.cat([img, img.flip(-1)]))  # one pass over twice the batch
        return both.view(2, -1, both.shape[-1]).mean(0)  # -1, not len(img): traced exports keep any batch

    def extra_repr(self) -> str:
        return f"data={self.data.name}, views={self.views.describe()}"


def _unnamed_data(num_classes: int) -> DataSpec:
    """For a bare network: Fashion-MNIST's, the project's default, where the class count fits."""
    fashion = default_spec()
    if num_classes == len(fashion.classes):
        return fashion
    return DataSpec("unnamed", tuple(str(i) for i in range(num_classes)), fashion.mean, fashion.std)


def classes_of(model: nn.Module) -> tuple[str, ...]:
    """The names of a model's outputs: its data set's classes (a bare network: Fashion-MNIST's)."""
    return model.data.classes if isinstance(model, Classifier) else default_spec().classes


def shifted_views(img: torch.Tensor, shift: int) -> list[torch.Tensor]:
    """The image itself, then moved by `shift` pixels down, up, right and left (zero fill)."""
    if not shift:
        return [img]
    h, w = img.shape[-2:]
    padded = F.pad(img, (shift, shift, shift, shift))
    offsets = [(0, 0), (-shift, 0), (shift, 0), (0, -shift), (0, shift)]
    return [padded[..., shift + dy : shift + dy + h, shift + dx : shift + dx + w] for dy, dx in offsets]


def input_shape(model: nn.Module) -> tuple[int, int, int]:
    """[C, S, S]: the image a model takes, from its network's config (a Classifier's or a bare LeNet's)."""
    config = getattr(model, "net", model).config
    return (config.in_channels, config.image_size, config.image_size)
