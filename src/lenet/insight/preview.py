"""`lenet preview DATASET`: the inputs (28x28 grey, 32x32 colour, ...) the model will see, a few per class, in one PNG.

A folder of photos goes through `data/images.py` (greyscale, inversion, the ground removed, trimmed
and scaled) before training; this shows the result, so a user sees a grey frame, a lost object or a
wrong class folder before spending a training run on it. Needs matplotlib, as the report does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from lenet.core.errors import LenetError
from lenet.core.files import write_bytes
from lenet.data.load import load_dataset
from lenet.insight.report import load_plots

PER_CLASS = 8  # images a class, one row each
MAX_PER_CLASS = 32  # more is a wall of thumbnails, and a large PNG
MAX_CLASSES = 50  # rows shown; a folder may have up to 1,000 classes, and the rest are counted


@dataclass(frozen=True)
class Preview:
    path: Path  # the PNG
    classes: int  # classes shown (at most MAX_CLASSES)
    images: int  # images shown
    short: tuple[str, ...]  # classes shown with fewer than the images asked for: all they have


def write_preview(dataset: str, out: str | os.PathLike = "preview.png", per_class: int = PER_CLASS,
                  data_dir: str | None = None, skip_bad: bool = False, channels: int | None = None,
                  size: int | None = None) -> Preview:  # fmt: skip
    """Write a PNG grid of the first `per_class` images of each class, as the model sees them (training
    images first, then test images where a class has too few), each row named by its class.

    Args:
        dataset: a data set as `lenet train --dataset` names it: fashion-mnist, folder:PATH, csv:PATH, ...
        out: the PNG file to write (its folder is made).
        per_class: images a class, 1 to MAX_PER_CLASS.
        data_dir: where a registry data set's files are (as --data-dir).
        skip_bad: leave a folder's unreadable files out instead of refusing it (as --skip-bad).
        channels, size: a folder's images in grey (1) or colour (3), at this side (as --channels and
            --size); inferred where None.
    """
    target = Path(out)
    if target.suffix.lower() != ".png":
        raise LenetError(f"--out {out}: the preview is a PNG file; give a name ending in .png")
    if target.is_dir():
        raise LenetError(f"--out {out}: a directory; give a file name ending in .png")
    if not 1 <= per_class <= MAX_PER_CLASS:
        raise LenetError(f"--per-class {per_class}: give 1 to {MAX_PER_CLASS}")
    plots = load_plots()  # before the data is read: a missing extra fails at once
    data = load_dataset(dataset, data_dir, skip_bad=skip_bad, channels=channels, size=size)
    images = torch.cat([data.train_images, data.test_images]).cpu()
    labels = torch.cat([data.train_labels, data.test_labels]).cpu()
    classes = data.spec.classes
    rows = [images[(labels == c).nonzero().flatten()[:per_class]] for c in range(min(len(classes), MAX_CLASSES))]
    hidden = len(classes) - len(rows)
    title = (f"{data.spec.name}: the first {per_class} images of each class as the model sees them "
             f"({'colour' if data.spec.channels == 3 else 'grey'} {data.spec.image_size}x{data.spec.image_size})"
             + (f"; {hidden} more classes not shown" if hidden else ""))  # fmt: skip
    png = plots.png_bytes(plots.preview(rows, classes[: len(rows)], per_class, title))
    write_bytes(target, png)
    short = tuple(name for name, row in zip(classes, rows) if len(row) < per_class)
    return Preview(target, len(rows), sum(len(row) for row in rows), short)
