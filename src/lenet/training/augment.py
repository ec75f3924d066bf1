"""Augmentation as batched tensor ops on the device (never a per-sample Python loop or a DataLoader
worker): random translations and flips, the alternating-flip half, random erasing."""

from __future__ import annotations

import math

import torch


def alternating_half(n: int, seed: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """A random half of n images (bool, one per image) for alternating flips: mirrored in odd epochs,
    the rest in even ones. Drawn from the seed alone, so a resumed run draws the same half."""
    return (torch.rand(n, generator=torch.Generator().manual_seed(seed)) < 0.5).to(device)


def augment(images: torch.Tensor, shift: int, flip: bool, generator: torch.Generator | None = None,
            mirror: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
    """Random translations by up to `shift` pixels (zero fill) and horizontal flips.

    One gather for the whole batch: each image reads its HxW window out of a zero-padded copy
    at its own random offset, every channel moved alike. Works on uint8 or float images [N, C, H, W].
    `mirror` (bool, one per image) says which images to flip; without it each is flipped with
    probability 1/2.
    """
    n, c, h, w = images.shape
    device = images.device
    if shift:
        padded = torch.nn.functional.pad(images, (shift, shift, shift, shift))
        dy, dx = torch.randint(0, 2 * shift + 1, (2, n, 1), device=device, generator=generator)
        rows = (dy + torch.arange(h, device=device))[:, None, :, None]  # [n, 1, h, 1]
        cols = (dx + torch.arange(w, device=device))[:, None, None, :]  # [n, 1, 1, w]
        batch = torch.arange(n, device=device)[:, None, None, None]
        channel = torch.arange(c, device=device)[None, :, None, None]
        images = padded[batch, channel, rows, cols]  # [n, c, h, w]
    if flip:
        if mirror is None:
            mirror = torch.rand(n, device=device, generator=generator) < 0.5
        images = torch.where(mirror[:, None, None, None], images.flip(-1), images)
    return images


def erase(images: torch.Tensor, probability: float, area: tuple[float, float], ratio: tuple[float, float],
          fill: str = "zero", generator: torch.Generator | None = None) -> torch.Tensor:  # fmt: skip
    """Random erasing (Zhong et al. 2017) of a batch [N, C, H, W] at once: each image, with
    `probability`, gets one rectangle blanked (`fill` "zero") or filled with random pixels ("noise").

    The rectangle's share of the image is uniform in `area`, its height / width log-uniform in
    `ratio`; its sides are clipped to the image and it lies wholly inside it, at a uniform place.
    Every number is drawn from `generator`, one fixed set of draws per batch, so a resumed run
    draws the same rectangles. A new tensor; `images` is left as it was.
    """
    n, _, h, w = images.shape
    device = images.device
    draws = torch.rand(5, n, device=device, generator=generator)  # apply?, area, ratio, top, left
    share = area[0] + (area[1] - area[0]) * draws[1]
    log_low, log_high = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(log_low + (log_high - log_low) * draws[2])
    pixels = share * h * w
    heights = (pixels * aspect).sqrt().round().clamp(1, h)
    widths = (pixels / aspect).sqrt().round().clamp(1, w)
    tops = (draws[3] * (h - heights + 1)).floor()
    lefts = (draws[4] * (w - widths + 1)).floor()
    rows = torch.arange(h, device=device)[None, :]
    cols = torch.arange(w, device=device)[None, :]
    inside_rows = (rows >= tops[:, None]) & (rows < (tops + heights)[:, None])  # [n, h]
    inside_cols = (cols >= lefts[:, None]) & (cols < (lefts + widths)[:, None])  # [n, w]
    mask = (inside_rows[:, :, None] & inside_cols[:, None, :]) & (draws[0] < probability)[:, None, None]
    mask = mask[:, None]  # [n, 1, h, w]: every channel of the rectangle
    if fill == "noise":
        if images.is_floating_point():
            noise = torch.rand(images.shape, device=device, generator=generator, dtype=images.dtype)
        else:
            noise = torch.randint(0, 256, images.shape, device=device, generator=generator, dtype=images.dtype)
        return torch.where(mask, noise, images)
    if fill != "zero":
        raise ValueError(f"an erased rectangle is filled with zero or noise, not {fill!r}")
    return images.masked_fill(mask, 0)
