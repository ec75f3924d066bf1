"""What a trained LeNet learned, as tensors: first-layer filters, feature maps, worst mistakes.

Plain torch, no plotting; plots.py draws these. Layers are found by type, never by index:
batch norm shifts the indices (`conv.1` is BatchNorm2d in lenet_bn, Sigmoid in lenet).
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from lenet.data.batches import to_float
from lenet.core.errors import LenetError
from lenet.core.files import write_text
from lenet.models.lenet import ACTIVATIONS, LeNet, eval_mode

_ACTIVATION_TYPES = tuple(ACTIVATIONS.values())


@dataclass(frozen=True)
class FeatureMaps:
    block: int  # 1 or 2: which convolution block
    layer: str  # the hooked module's name, e.g. "conv.2"
    kind: str  # its type, e.g. "ReLU"
    maps: torch.Tensor  # [images, channels, height, width], on the CPU


@dataclass(frozen=True)
class Mistakes:
    """Misclassified test images, most confident first."""

    indices: torch.Tensor  # into the test set
    true: torch.Tensor
    predicted: torch.Tensor
    probability: torch.Tensor  # the model's probability for its (wrong) prediction


def first_conv(model: LeNet) -> nn.Conv2d:
    for module in model.conv:
        if isinstance(module, nn.Conv2d):
            return module
    raise LenetError("the model has no convolution layer")


def first_layer_filters(model: LeNet) -> torch.Tensor:
    """The first convolution's kernels, [out_channels, in_channels, 5, 5]: one input channel for grey, three
    (R, G, B) for colour."""
    return first_conv(model).weight.detach().cpu()


def block_activations(model: LeNet) -> list[tuple[str, nn.Module]]:
    """(name, module) of the nonlinearity in each convolution block, in order.

    A block starts at a Conv2d; its feature maps are what comes out of the activation
    that follows it (after batch norm where there is one; before the pooling, or after it in a
    model with `norm_after_pool`).
    """
    found: list[tuple[str, nn.Module]] = []
    in_block = False
    for name, module in model.conv.named_children():
        if isinstance(module, nn.Conv2d):
            in_block = True
        elif in_block and isinstance(module, _ACTIVATION_TYPES):
            found.append((f"conv.{name}", module))
            in_block = False
    if not found:
        raise LenetError("the model's conv block has no activation after a convolution")
    return found


# Feature maps drawn per image, by the report and by the server's page; lenet_wide's 32 would leave
# no room to see any.
MAX_CHANNELS = 16


def channels_shown(channels: int) -> list[int]:
    """Which of a block's `channels` feature maps the report's figures and the page's layer view draw:
    the first MAX_CHANNELS, the same ones for every image, so that one map can be followed from image
    to image (the report's rows, the page's successive drawings)."""
    return list(range(min(channels, MAX_CHANNELS)))


@dataclass(frozen=True)
class HiddenActivations:
    layer: str  # the activation module's name, e.g. "fc.2"
    kind: str  # its type, e.g. "ReLU"
    values: torch.Tensor  # [images, units], on the CPU


@dataclass(frozen=True)
class LayerActivations:
    """What each layer of one pass sees: the conv blocks' maps, the hidden layers' units, the logits."""

    conv: list[FeatureMaps]
    hidden: list[HiddenActivations]
    logits: torch.Tensor  # [images, classes], on the CPU


@torch.inference_mode()
def layer_activations(model: LeNet, images: torch.Tensor) -> LayerActivations:
    """One pass of the network over uint8 images [N, C, S, S], every activation kept on the way.

    The pass walks the layers as LeNet.forward runs them (normalise, conv block, flatten, fully
    connected block) instead of hooking them: hooks live on the shared modules, so two passes on two
    threads (the server's) would each catch the other's outputs.
    """
    conv_names = {name for name, _ in block_activations(model)}
    conv: list[FeatureMaps] = []
    hidden: list[HiddenActivations] = []
    with eval_mode(model):
        x = model.normalize(to_float(images.to(first_conv(model).weight.device)))
        for name, module in model.conv.named_children():
            x = module(x)
            if f"conv.{name}" in conv_names:
                conv.append(FeatureMaps(len(conv) + 1, f"conv.{name}", type(module).__name__, x.detach().cpu()))
        x = x.flatten(1)
        for name, module in model.fc.named_children():
            x = module(x)
            if isinstance(module, _ACTIVATION_TYPES):
                hidden.append(HiddenActivations(f"fc.{name}", type(module).__name__, x.detach().cpu()))
    return LayerActivations(conv, hidden, x.detach().cpu())


def feature_maps(model: LeNet, images: torch.Tensor) -> list[FeatureMaps]:
    """Each convolution block's activations for uint8 images [N, C, S, S]."""
    return layer_activations(model, images).conv


def one_per_class(labels: torch.Tensor, count: int) -> torch.Tensor:
    """Indices of the first image of each of `count` different classes, in test-set order."""
    seen: dict[int, int] = {}
    for i, label in enumerate(labels.tolist()):
        seen.setdefault(label, i)
        if len(seen) == count:
            break
    return torch.tensor(list(seen.values()), dtype=torch.long)


def confident_mistakes(logits: torch.Tensor, labels: torch.Tensor, count: int) -> Mistakes:
    """The `count` misclassified images the model was surest about."""
    probs = logits.float().softmax(dim=1).cpu()
    labels = labels.cpu()
    confidence, predicted = probs.max(dim=1)
    wrong = (predicted != labels).nonzero().flatten()
    order = confidence[wrong].argsort(descending=True, stable=True)[:count]
    picked = wrong[order]
    return Mistakes(picked, labels[picked], predicted[picked], confidence[picked])


# --- the misclassified images by name -----------------------------------------------------------

MISTAKES_COLUMNS = ("path", "truth", "prediction", "confidence")


@dataclass(frozen=True)
class Mistake:
    """One misclassified test image: where it came from, its class, the model's answer and probability."""

    index: int  # into the test set
    path: str  # a folder's file relative to the folder, "NAME.csv, line N", or "test image INDEX"
    truth: str
    prediction: str
    confidence: float  # the model's probability for its (wrong) prediction


def misclassified(logits: torch.Tensor, labels: torch.Tensor, sources: tuple[str, ...],
                  classes: tuple[str, ...]) -> list[Mistake]:  # fmt: skip
    """Every misclassified test image, in test-set order, named by `sources` (one per test image, as
    `Dataset.test_sources`) or, where there are none, by its index."""
    probs = logits.float().softmax(dim=1).cpu()
    confidence, predicted = probs.max(dim=1)
    wrong = (predicted != labels.cpu()).nonzero().flatten().tolist()
    name = lambda i: sources[i] if sources else f"test image {i}"  # noqa: E731
    label = lambda c: classes[c] if c < len(classes) else str(c)  # noqa: E731
    return [Mistake(i, name(i), label(int(labels[i])), label(int(predicted[i])), float(confidence[i])) for i in wrong]


def check_mistakes_path(path: str | os.PathLike) -> Path:
    """The file `--mistakes` names, checked before any work: a .csv file in a directory that can exist."""
    target = Path(path)
    if target.suffix.lower() != ".csv":
        raise LenetError(f"--mistakes {path}: the mistakes are a CSV file; give a name ending in .csv")
    if target.is_dir():
        raise LenetError(f"--mistakes {path}: a directory; give a file name ending in .csv")
    for parent in target.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise LenetError(f"--mistakes {path}: {parent} is a file, not a directory")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise LenetError(f"--mistakes {path}: cannot write in {parent} (permission denied)")
            break
    return target


def write_mistakes_csv(path: str | os.PathLike, mistakes: list[Mistake]) -> None:
    """One row per misclassified image (MISTAKES_COLUMNS), written atomically: the old file or the new, whole."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(MISTAKES_COLUMNS)
    for m in mistakes:
        writer.writerow([m.path, m.truth, m.prediction, f"{m.confidence:.6f}"])
    write_text(path, out.getvalue())
