"""samples.safetensors: a few test images per class, kept with a run when it begins, so that the run is
deployable by itself: the server's page shows them and ONNX Runtime is checked on them where the data
set is not at hand (a model trained on your own folder, served without it)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
from pydantic import Field
from safetensors import safe_open
from safetensors.torch import save as safetensors_bytes

from lenet.core.errors import RunError
from lenet.core.files import write_bytes
from lenet.runs.record import Record, parse

SAMPLES_FILE = "samples.safetensors"
SAMPLES_PER_CLASS = 8  # test images a class kept with a run: a row for the page, a few dozen for a runtime's check
FORMAT = "lenet.samples.v1"


class SamplesMetadata(Record):
    """samples.safetensors' metadata; its tensors are `images` (uint8 [N, C, S, S], the model's input) and `labels` (int64 [N])."""

    FILE = SAMPLES_FILE
    ZH = {"format": "固定为 lenet.samples.v1", "split": "图像来自哪个划分：test",
          "per_class": "每个类别最多保存的图像数"}

    format: Literal["lenet.samples.v1"] = Field(description="always lenet.samples.v1")
    split: Literal["test"] = Field("test", description="the split the images come from: test, never trained on")
    per_class: str = Field(str(SAMPLES_PER_CLASS), pattern="^[0-9]{1,4}$", description="images kept a class, at most")


def first_per_class(labels: torch.Tensor, per_class: int) -> list[int]:
    """The first `per_class` images of each class, in class order: the same ones every time."""
    classes = int(labels.max()) + 1 if len(labels) else 0
    return [i for c in range(classes) for i in (labels == c).nonzero().flatten()[:per_class].tolist()]


def write_samples(run_dir: Path, images: torch.Tensor, labels: torch.Tensor) -> None:
    keep = first_per_class(labels.cpu(), SAMPLES_PER_CLASS)
    tensors = {"images": images.cpu()[keep].contiguous(), "labels": labels.cpu()[keep].long().contiguous()}
    write_bytes(run_dir / SAMPLES_FILE, safetensors_bytes(tensors, {"format": FORMAT, "split": "test",
                                                                    "per_class": str(SAMPLES_PER_CLASS)}))  # fmt: skip


def read_samples(run_dir: Path, classes: int, shape: tuple[int, int, int] = (1, 28, 28)) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The images and labels kept with a run (None for a run of before they were kept), checked: images of
    `shape` [C, S, S], the model's input."""
    path = run_dir / SAMPLES_FILE
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            parse(SamplesMetadata, f.metadata() or {}, f"{path} (metadata)")
            if set(f.keys()) != {"images", "labels"}:
                raise RunError(f"{path}: holds {sorted(f.keys())}, not images and labels")
            images, labels = f.get_tensor("images"), f.get_tensor("labels")
    except RunError:
        raise
    except Exception as e:  # safetensors raises several types for a damaged file
        raise RunError(f"{path}: not a readable safetensors file ({type(e).__name__})") from None
    if images.dtype != torch.uint8 or images.dim() != 4 or tuple(images.shape[1:]) != tuple(shape):
        raise RunError(f"{path}: images are {images.dtype} {list(images.shape)}, not uint8 [N, {', '.join(map(str, shape))}]")
    shaped = labels.dtype == torch.int64 and labels.shape == (len(images),)
    if not shaped or (len(labels) and not (int(labels.min()) >= 0 and int(labels.max()) < classes)):
        raise RunError(f"{path}: labels are not {len(images)} class numbers below {classes}")
    return images, labels
