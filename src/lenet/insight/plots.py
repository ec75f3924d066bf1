"""The report's figures, drawn with matplotlib's Agg backend into PNG bytes.

Only this module imports matplotlib, and only report.py imports this module, so training
and every other command work without it. Figures are built with `Figure` directly, never
pyplot: no global state, no GUI backend, nothing changed for a notebook that imports lenet.
Every figure has a fixed size (SIZES, at DPI) so its PNG is always the same number of pixels.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence

import torch
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from lenet.insight.analysis import FeatureMaps, Mistakes, channels_shown
from lenet.runs.metrics import judged as runs_judged

DPI = 100
SIZES = {  # inches, width x height
    "curves": (11.0, 4.2),
    "confusion": (8.0, 7.0),
    "mistakes": (12.0, 6.6),
    "samples": (12.0, 4.6),
    "filters": (12.0, 4.8),
    "features": (14.0, 4.6),
}
SPLITS = ("train", "val", "test")  # metrics.csv columns are SPLIT_loss and SPLIT_accuracy


def new_figure(kind: str) -> Figure:
    fig = Figure(figsize=SIZES[kind], dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)  # Agg, whatever backend the user's matplotlib is set to
    return fig


def png_bytes(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)  # no bbox_inches="tight": it would change the size
    return buffer.getvalue()


# --- learning curves ------------------------------------------------------------------


def curves(metrics: Sequence[Mapping[str, float]], title: str = "") -> Figure:
    """Loss and accuracy per epoch for every split metrics.csv has (train, val, test)."""
    return compare_curves({"": metrics}, title)


def compare_curves(runs: Mapping[str, Sequence[Mapping[str, float]]], title: str = "") -> Figure:
    """Several runs' curves overlaid: one colour per run, one line style per split."""
    fig = new_figure("curves")
    loss_ax, acc_ax = fig.subplots(1, 2)
    styles = {"train": "--", "val": ":", "test": "-"}
    for i, (label, rows) in enumerate(runs.items()):
        for split in SPLITS:
            if f"{split}_loss" not in rows[0]:
                continue
            name = f"{label} {split}".strip()
            color = f"C{i}" if label else _split_color(split)  # a run's colour, or a split's for one run
            kw = {"color": color, "linestyle": styles[split], "marker": "o", "markersize": 3}
            judged = runs_judged(rows, f"{split}_loss")  # --eval-every skips some epochs
            epochs = [row["epoch"] for row in judged]
            loss_ax.plot(epochs, [row[f"{split}_loss"] for row in judged], label=name, **kw)
            acc_ax.plot(epochs, [100 * row[f"{split}_accuracy"] for row in judged], label=name, **kw)
    _style_axes(loss_ax, "loss (cross-entropy per image)")
    _style_axes(acc_ax, "accuracy (%)")
    loss_ax.legend(fontsize=8)
    acc_ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return fig


def _split_color(split: str) -> str:
    return {"train": "C0", "val": "C2", "test": "C1"}[split]


def _style_axes(ax: Axes, ylabel: str) -> None:
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.xaxis.get_major_locator().set_params(integer=True)


# --- confusion matrix -----------------------------------------------------------------


def confusion(matrix: torch.Tensor, classes: Sequence[str]) -> Figure:
    """A heat map of the counts `lenet eval` prints: rows true class, columns predicted."""
    counts = matrix.cpu().long()
    fig = new_figure("confusion")
    ax = fig.subplots()
    image = ax.imshow(counts.numpy(), cmap="Blues")
    fig.colorbar(image, ax=ax, shrink=0.8, label="images")
    threshold = counts.max().item() / 2
    for (i, j), value in _cells(counts):
        ax.text(j, i, str(value), ha="center", va="center", fontsize=8, color="white" if value > threshold else "black")
    ticks = range(len(classes))
    ax.set_xticks(ticks, classes, rotation=45, ha="right")
    ax.set_yticks(ticks, classes)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    total, correct = counts.sum().item(), counts.diagonal().sum().item()
    ax.set_title(f"confusion matrix: {correct:,} of {total:,} test images right ({correct / max(total, 1):.2%})")
    return fig


def _cells(counts: torch.Tensor):
    for i, row in enumerate(counts.tolist()):
        for j, value in enumerate(row):
            yield (i, j), value


# --- images: mistakes, filters, feature maps -------------------------------------------


def mistakes(images: torch.Tensor, found: Mistakes, classes: Sequence[str], rows: int = 3, cols: int = 8) -> Figure:
    """A grid of misclassified test images with true class, predicted class and probability."""
    fig = new_figure("mistakes")
    titles = [f"true: {classes[true]}\npred: {classes[predicted]}\n{prob:.1%}"
              for true, predicted, prob in zip(found.true.tolist(), found.predicted.tolist(), found.probability.tolist())]  # fmt: skip
    _image_grid(fig, [images[i] for i in found.indices.tolist()], titles, rows, cols)
    fig.suptitle(f"the {len(found.indices)} most confidently misclassified test images")
    return fig


def samples(images: torch.Tensor, labels: torch.Tensor, classes: Sequence[str], cols: int = 10,
            name: str = "Fashion-MNIST") -> Figure:  # fmt: skip
    """uint8 images [N, C, S, S] in a grid, each titled with its class (the notebook's first look at the data)."""
    fig = new_figure("samples")
    _image_grid(fig, list(images), [classes[label] for label in labels.tolist()], math.ceil(len(images) / cols), cols)
    fig.suptitle(f"{len(images)} {name} images and their classes")
    return fig


def show_image(ax, image: torch.Tensor) -> None:
    """A uint8 image [C, S, S] on `ax`: grey on a grey scale, colour as it is."""
    if image.shape[0] == 1:
        ax.imshow(image[0].cpu().numpy(), cmap="gray", vmin=0, vmax=255)
    else:
        ax.imshow(image.cpu().permute(1, 2, 0).numpy())


def _image_grid(fig: Figure, images: Sequence[torch.Tensor], titles: Sequence[str], rows: int, cols: int) -> None:
    axes = fig.subplots(rows, cols, squeeze=False).flatten()
    for ax in axes:
        ax.set_axis_off()
    for ax, image, title in zip(axes, images, titles):
        show_image(ax, image)
        ax.set_title(title, fontsize=8)


def filters(weights: torch.Tensor) -> Figure:
    """The first convolution's kernels [out, in, k, k], each on its own symmetric scale, stated under it.

    One shared scale leaves every filter but the strongest washed out; a filter's pattern is in
    its signs and relative sizes, and its strength is the number under it. A grey model's kernels are
    drawn blue-white-red; a colour model's in RGB, each channel's weight as that colour's brightness
    around a mid-grey 0 (as AlexNet's first-layer filters are usually shown).
    """
    colour = weights.shape[1] == 3
    fig = new_figure("filters")
    count = len(weights)
    cols = min(count, 8)
    axes = fig.subplots(math.ceil(count / cols), cols, squeeze=False).flatten()
    for ax in axes:
        ax.set_axis_off()
    for i, (ax, kernel) in enumerate(zip(axes, weights)):
        limit = kernel.abs().max().item() or 1.0
        if colour:
            ax.imshow((kernel / limit / 2 + 0.5).permute(1, 2, 0).clamp(0, 1).numpy())  # [-x, x] -> [0, 1]: grey is 0
        else:
            ax.imshow(kernel[0].numpy(), cmap="RdBu_r", vmin=-limit, vmax=limit)
        ax.set_title(f"filter {i + 1}: ±{limit:.2f}", fontsize=9)
    side = weights.shape[-1]
    scale = ("in RGB, each on its own scale: mid-grey 0, a colour brighter where the filter weighs that channel up"
             if colour else "each on its own scale: blue -x, white 0, red +x")  # fmt: skip
    fig.suptitle(f"the {count} {side}x{side} first-layer filters {scale} (x above it)")
    return fig


def feature_maps(images: torch.Tensor, labels: torch.Tensor, found: FeatureMaps, classes: Sequence[str]) -> Figure:
    """One row per image: the input, then its feature maps in this block (analysis.channels_shown, as the
    server's page draws them)."""
    shown_channels = channels_shown(found.maps.shape[1])
    channels = len(shown_channels)
    fig = new_figure("features")
    axes = fig.subplots(len(images), channels + 1, squeeze=False)
    for row, (image, label, maps) in enumerate(zip(images, labels.tolist(), found.maps)):
        show_image(axes[row, 0], image)
        axes[row, 0].set_title(classes[label], fontsize=8)
        for column, c in enumerate(shown_channels, start=1):
            # Each map on its own scale: what matters is where it responds, not how much.
            axes[row, column].imshow(maps[c].numpy(), cmap="viridis")
            if row == 0:
                axes[row, column].set_title(f"ch {c + 1}", fontsize=8)
    for ax in axes.flatten():
        ax.set_axis_off()
    _, total, height, width = found.maps.shape
    shown = f"all {total}" if channels == total else f"first {channels} of {total}"
    fig.suptitle(f"conv block {found.block}: {found.kind} output ({found.layer}), {shown} channels of {height}x{width}")
    return fig


# --- sweeps ---------------------------------------------------------------------------


def metric_against(name: str, points: Sequence[tuple[object, float]], metric: str) -> Figure:
    """A sweep's metric (one dot per run) against one varied recipe field; a log axis for wide ranges."""
    fig = new_figure("filters")
    ax = fig.subplots()
    xs, ys = [x for x, _ in points], [100 * y for _, y in points]
    numeric = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in xs)
    if not numeric:  # choices such as a model or an optimizer: one column each
        labels = sorted({str(x) for x in xs})
        xs = [labels.index(str(x)) for x in xs]
        ax.set_xticks(range(len(labels)), labels)
    ax.scatter(xs, ys, alpha=0.7)
    if numeric and min(xs) > 0 and max(xs) / min(xs) >= 10:
        ax.set_xscale("log")
    ax.set_xlabel(name)
    ax.set_ylabel(f"{metric} (%)")
    ax.grid(alpha=0.3)
    return fig


# --- a data set's inputs ----------------------------------------------------------------


def preview(rows: Sequence[torch.Tensor], classes: Sequence[str], per_class: int, title: str) -> Figure:
    """One row a class: its uint8 images [n, C, S, S] (n <= per_class), the class named at the left.

    Sized by the grid (not SIZES): 0.9 inch an image, so a thumbnail is 90x90 pixels whatever the count.
    """
    label_width = 0.12 * max(len(name) for name in classes) + 0.4
    fig = Figure(figsize=(0.9 * per_class + label_width, 0.9 * len(rows) + 0.6), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(rows), per_class, squeeze=False)
    for name, images, line in zip(classes, rows, axes):
        for i, ax in enumerate(line):
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(i < len(images))
            if i < len(images):
                show_image(ax, images[i])
        line[0].set_ylabel(name if len(images) else f"{name}\n(none)", rotation=0, ha="right", va="center", fontsize=9)
    fig.suptitle(title, fontsize=10)
    return fig
