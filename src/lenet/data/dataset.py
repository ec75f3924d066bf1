"""A data set in memory: four uint8/int64 tensors and what they are (name, classes, mean, std)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

import torch

from lenet.core.errors import DataError
from lenet.data.registry import DATASETS, DEFAULT, IMAGE_SIZE, TENSOR_NAMES, DataSpec, data_digest

# CIFAR-10's images, [3, 32, 32], taken beside the grey [28, 28] ones until the core change that takes any
# uint8 [N, C, S, S] (issue 37) replaces this check; they are kept as they are, the grey ones get their channel.
COLOUR_SHAPE = (3, 32, 32)


@dataclass
class Dataset:
    """The four tensors, uint8 images of shape [N, 1, 28, 28] and int64 labels, and what they are."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    source: str  # where the files were read from
    sha256: dict[str, str]
    spec: DataSpec = None  # type: ignore[assignment]  # name, classes, mean, std; measured when None
    skipped: tuple[str, ...] = ()  # files of a folder data set left out (--skip-bad): "CLASS/FILE: why"
    # Where each test image came from, in order: "CLASS/FILE" in a folder, "NAME.csv, line N" in a CSV
    # data set; () for a registry data set, whose images are known by their index.
    test_sources: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.spec is None:
            self.spec = measured_spec(DEFAULT, DATASETS[DEFAULT].classes, self.train_images)

    @classmethod
    def from_tensors(cls, train_images, train_labels, test_images, test_labels, source: str, sha256: dict[str, str],
                     name: str, classes: tuple[str, ...]) -> Dataset:  # fmt: skip
        """Check that decoded tensors ([N, 28, 28] or [N, 3, 32, 32] images, [N] labels) fit together; shape them
        for training."""
        for split, images, labels in (("train", train_images, train_labels), ("test", test_images, test_labels)):
            if tuple(images.shape[1:]) not in ((IMAGE_SIZE, IMAGE_SIZE), COLOUR_SHAPE):
                raise DataError(f"{split} images have shape {list(images.shape)}, "
                                "expected [N, 28, 28] or [N, 3, 32, 32]")  # fmt: skip
            if images.shape[1:] != train_images.shape[1:]:
                raise DataError(f"test images are {list(images.shape[1:])}, train's {list(train_images.shape[1:])}")
            if labels.dim() != 1 or len(labels) != len(images):
                raise DataError(f"{split} has {len(images)} images but {labels.numel()} labels")
            if len(labels) and int(labels.max()) >= len(classes):
                raise DataError(f"{split} labels go up to {int(labels.max())}; {name} has {len(classes)} classes")
        spec = measured_spec(name, classes, train_images)
        if train_images.dim() == 3:  # grey: given their one channel
            train_images, test_images = train_images.unsqueeze(1), test_images.unsqueeze(1)
        return cls(train_images, train_labels.long(), test_images, test_labels.long(), source, sha256, spec)

    def subset(self, n_train: int | None = None, n_test: int | None = None) -> Dataset:
        """The first `n_train` training and `n_test` test images (all of a split where None), for short
        runs: tests, benchmarks and sweeps on part of a data set. The mean and std stay the whole set's;
        the digest is the subset's own (of the four tensors it holds), so a run on part of a data set
        is never taken for one on all of it."""
        if (n_train is None or n_train >= len(self.train_labels)) and (n_test is None or n_test >= len(self.test_labels)):
            return self
        tensors = (self.train_images[:n_train], self.train_labels[:n_train],
                   self.test_images[:n_test], self.test_labels[:n_test])  # fmt: skip
        hashes = tensor_hashes(*tensors)
        return replace(self, train_images=tensors[0], train_labels=tensors[1], test_images=tensors[2],
                       test_labels=tensors[3], sha256=hashes, spec=replace(self.spec, sha256=data_digest(hashes)),
                       test_sources=self.test_sources[:n_test])  # fmt: skip

    def test_source(self, index: int) -> str:
        """Where test image `index` came from: its file (or CSV line), else "test image INDEX"."""
        return self.test_sources[index] if self.test_sources else f"test image {index}"

    def to(self, device: torch.device | str) -> Dataset:
        move = lambda t: t.to(device, non_blocking=True)  # noqa: E731
        return replace(self, train_images=move(self.train_images), train_labels=move(self.train_labels),
                       test_images=move(self.test_images), test_labels=move(self.test_labels))  # fmt: skip


def tensor_hashes(*tensors: torch.Tensor) -> dict[str, str]:
    """The SHA-256 of each of a data set's four tensors (train images, train labels, test images, test labels)."""
    return {name: hashlib.sha256(t.cpu().contiguous().numpy().tobytes()).hexdigest()
            for name, t in zip(TENSOR_NAMES, tensors)}  # fmt: skip


FashionMNIST = Dataset  # its name while Fashion-MNIST was the only data set


def check_model_input(data: Dataset) -> None:
    """Refuse colour images where a model is to see them, in one line: the models take [1, 28, 28] until the
    core change of issue 37 (which replaces this check with COLOUR_SHAPE's); until then CIFAR-10 is loaded and
    checked, not trained on or judged, where a network would fail on its shape with a traceback."""
    shape = tuple(data.train_images.shape[1:])
    if shape != (1, IMAGE_SIZE, IMAGE_SIZE):
        raise DataError(f"{data.spec.name}'s images are {'x'.join(map(str, shape))}; the models of this version "
                        f"take 1x{IMAGE_SIZE}x{IMAGE_SIZE} grey images")  # fmt: skip


def measured_spec(name: str, classes: tuple[str, ...], train_images: torch.Tensor) -> DataSpec:
    """The data set's description with the mean and std of its training pixels in [0, 1], to 4 places
    (Fashion-MNIST: 0.2860 and 0.3530, MNIST: 0.1307 and 0.3081)."""
    if not train_images.numel():
        return DataSpec(name, tuple(classes), 0.5, 0.5)
    # From the 256-bin histogram of the uint8 pixels: exact, where the pixels as float64 took 750 MB.
    counts = torch.bincount(train_images.flatten(), minlength=256).double()
    values = torch.arange(256, dtype=torch.float64) / 255
    n = counts.sum()
    mean = (counts * values).sum() / n
    std = ((counts * (values - mean) ** 2).sum() / (n - 1).clamp(min=1)).sqrt()  # Bessel's, as Tensor.std
    return DataSpec(name, tuple(classes), round(mean.item(), 4), max(round(std.item(), 4), 1e-4))

