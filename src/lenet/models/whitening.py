"""A frozen first convolution that projects each image patch onto its main directions of variance.

airbench starts its CIFAR-10 network with a patch-whitening convolution that is never trained: its
filters are the leading eigenvectors of the training patches' covariance, each scaled by one over
the square root of its eigenvalue, once with each sign (a ReLU or a max-pool after it keeps only
one side of a direction, so both sides are kept). Being frozen, the layer needs no backward pass at
all: nothing before it learns, so the step also skips the backward of everything between it and the
first layer that does (here the first max-pool, at full resolution). Recipe field `whiten`.
"""

from __future__ import annotations

import torch
from torch import nn

from lenet.core.errors import LenetError

WHITEN_CHUNK = 500  # images unfolded at once (memory only): 500 x 784 patches x 25 floats = 39 MB


def patch_covariance(images: torch.Tensor, conv: nn.Conv2d, normalize: nn.Module) -> torch.Tensor:
    """The covariance of `conv`'s input patches (its kernel, padding and stride) over `images` ([N, C, H, W]
    floats in [0, 1], normalised by `normalize` as the network does), in float64: [C*kh*kw, C*kh*kw]."""
    dims = conv.in_channels * conv.kernel_size[0] * conv.kernel_size[1]
    total = torch.zeros(dims, dims, dtype=torch.float64)
    mean = torch.zeros(dims, dtype=torch.float64)
    count = 0
    with torch.no_grad():
        for start in range(0, len(images), WHITEN_CHUNK):
            x = normalize(images[start : start + WHITEN_CHUNK].float().cpu())
            patches = nn.functional.unfold(x, conv.kernel_size, padding=conv.padding, stride=conv.stride)
            patches = patches.transpose(1, 2).reshape(-1, dims).double()  # [patches, dims]
            total += patches.T @ patches
            mean += patches.sum(dim=0)
            count += len(patches)
    mean /= count
    return total / count - torch.outer(mean, mean)


def whitening_filters(covariance: torch.Tensor, filters: int, shape: tuple[int, ...], eps: float) -> torch.Tensor:
    """`filters` filters of `shape` ([C, kh, kw]): the leading filters // 2 eigenvectors of `covariance`,
    each over the square root of its eigenvalue + `eps`, then the same with the opposite sign."""
    if filters % 2:
        raise LenetError(f"a whitened first convolution needs an even number of channels (each direction with "
                         f"both signs), not {filters}")  # fmt: skip
    directions = filters // 2
    if directions > len(covariance):
        raise LenetError(f"a whitened first convolution has at most {2 * len(covariance)} channels here (two per "
                         f"dimension of its {len(covariance)}-value patches), not {filters}")  # fmt: skip
    eigenvalues, eigenvectors = torch.linalg.eigh(covariance)  # ascending
    eigenvalues, eigenvectors = eigenvalues.flip(0)[:directions], eigenvectors.flip(1)[:, :directions]
    scaled = (eigenvectors / torch.sqrt(eigenvalues.clamp(min=0) + eps)).T  # [directions, dims]
    return torch.cat([scaled, -scaled]).reshape(filters, *shape).float()


def freeze_whitened(conv: nn.Conv2d, normalize: nn.Module, images: torch.Tensor, eps: float) -> None:
    """Set `conv`'s filters to the whitening of `images`' patches, its bias to zero, and freeze both."""
    covariance = patch_covariance(images, conv, normalize)
    filters = whitening_filters(covariance, conv.out_channels, tuple(conv.weight.shape[1:]), eps)
    with torch.no_grad():
        conv.weight.copy_(filters.to(conv.weight.device))
        if conv.bias is not None:
            conv.bias.zero_()
    conv.requires_grad_(False)
