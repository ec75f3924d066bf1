"""Batches on the device: uint8 to float, index batches, the validation hold-out, and augmentation as
batched tensor ops (never a per-sample Python loop or a DataLoader worker)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import torch

from lenet.core.errors import DataError
from lenet.data.dataset import Dataset



def subset(data: Dataset, n_train: int | None, n_test: int | None) -> Dataset:
    """The first `n_train` training and `n_test` test images of `data` (None: all of them); the rest of
    its record (source, digests, mean and std) is kept, so a subset's run still names its data."""
    return replace(data, train_images=data.train_images[:n_train], train_labels=data.train_labels[:n_train],
                   test_images=data.test_images[:n_test], test_labels=data.test_labels[:n_test])  # fmt: skip


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 pixels to floats in [0, 1], exactly as torchvision's ToTensor scales them."""
    return images.float().div_(255)


def batch_indices(
    n: int, batch_size: int, *, shuffle: bool, generator: torch.Generator | None = None, device: torch.device | str = "cpu"
) -> Iterator[torch.Tensor]:
    """Index tensors covering range(n) once, like a DataLoader with drop_last=False."""
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    order = order.to(device)
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]


def holdout(
    images: torch.Tensor, labels: torch.Tensor, size: int, seed: int = 0
) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """Split off `size` random images for validation: ((train), (validation)).

    The split depends on `seed` only, so runs with different training seeds share it.
    """
    if not 0 < size < len(labels):
        raise DataError(f"a validation split of {size} images needs 0 < size < {len(labels)}")
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed)).to(labels.device)
    val, train = order[:size].sort().values, order[size:].sort().values
    return (images[train], labels[train]), (images[val], labels[val])


# --- augmentation, as batched tensor ops ----------------------------------------------


def alternating_half(n: int, seed: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """A random half of n images (bool, one per image) for alternating flips: mirrored in odd epochs,
    the rest in even ones. Drawn from the seed alone, so a resumed run draws the same half."""
    return (torch.rand(n, generator=torch.Generator().manual_seed(seed)) < 0.5).to(device)


def augment(images: torch.Tensor, shift: int, flip: bool, generator: torch.Generator | None = None,
            mirror: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
    """Random translations by up to `shift` pixels (zero fill) and horizontal flips.

    One gather for the whole batch: each image reads its 28x28 window out of a zero-padded
    copy at its own random offset. Works on uint8 or float images [N, 1, H, W]. `mirror` (bool,
    one per image) says which images to flip; without it each is flipped with probability 1/2.
    """
    n, _, h, w = images.shape
    device = images.device
    if shift:
        padded = torch.nn.functional.pad(images, (shift, shift, shift, shift))
        dy, dx = torch.randint(0, 2 * shift + 1, (2, n, 1), device=device, generator=generator)
        rows = (dy + torch.arange(h, device=device))[:, :, None]  # [n, h, 1]
        cols = (dx + torch.arange(w, device=device))[:, None, :]  # [n, 1, w]
        images = padded[torch.arange(n, device=device)[:, None, None], 0, rows, cols].unsqueeze(1)
    if flip:
        if mirror is None:
            mirror = torch.rand(n, device=device, generator=generator) < 0.5
        images = torch.where(mirror[:, None, None, None], images.flip(-1), images)
    return images
