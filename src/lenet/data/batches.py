"""Batches on the device: uint8 to float, index batches, the validation hold-out. Augmentation is
training's, in `lenet.training.augment`."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from lenet.core.errors import DataError


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
