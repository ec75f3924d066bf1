"""Choosing the device: `auto` is CUDA, then Apple's MPS, then the CPU."""

from __future__ import annotations

import torch

from .errors import LenetError

DEVICES = ("auto", "cpu", "cuda", "mps")


def resolve_device(name: str = "auto") -> torch.device:
    kind = name.split(":")[0]
    if kind not in DEVICES:
        raise LenetError(f"unknown device {name!r}; choose from {', '.join(DEVICES)}")
    if kind == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if kind == "cuda" and not torch.cuda.is_available():
        raise LenetError("--device cuda asked for, but this PyTorch build sees no CUDA GPU; use --device cpu or auto")
    if kind == "mps" and not _mps_available():
        raise LenetError("--device mps asked for, but MPS is not available here; use --device cpu or auto")
    return torch.device(name)


def _mps_available() -> bool:
    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "cpu":
        return f"CPU ({torch.get_num_threads()} threads)"
    return device.type
