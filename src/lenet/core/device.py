"""Choosing the device: `auto` is CUDA, then Apple's MPS, then the CPU."""

from __future__ import annotations

import torch

from lenet.core.errors import LenetError

DEVICES = ("auto", "cpu", "cuda", "mps")


def check_device_name(name: str) -> str:
    """auto, cpu, mps, cuda or cuda:N; anything else is one line of error."""
    kind, colon, index = name.partition(":")
    if kind not in DEVICES or (colon and not (kind == "cuda" and index.isdigit())):
        raise LenetError(f"unknown device {name!r}; choose from {', '.join(DEVICES)} or cuda:N")
    return name


def resolve_device(name: str = "auto") -> torch.device:
    kind = check_device_name(name).split(":")[0]
    if kind == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if kind == "cuda" and not torch.cuda.is_available():
        raise LenetError(f"--device {name} asked for, but this PyTorch build sees no CUDA GPU; use --device cpu or auto")
    if kind == "cuda" and torch.device(name).index is not None and torch.device(name).index >= torch.cuda.device_count():
        raise LenetError(f"--device {name} asked for, but there are {torch.cuda.device_count()} CUDA GPUs")
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
