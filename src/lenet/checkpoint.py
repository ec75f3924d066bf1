"""Model weights on disk: safetensors (loading never runs code), the model config inside.

A checkpoint is self-describing: its metadata holds the LeNetConfig it was built from,
so `load()` needs nothing but the file (or the run directory holding `model.safetensors`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save as safetensors_bytes

from . import __version__
from .errors import CheckpointError, LenetError, short_repr
from .files import write_bytes
from .models import LeNet, LeNetConfig

WEIGHTS_FILE = "model.safetensors"
FORMAT = "lenet.model.v1"


def save_model(model: LeNet, path: str | os.PathLike, extra: dict[str, str] | None = None) -> Path:
    """Write the weights and model config atomically to `path`."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    metadata = {"format": FORMAT, "lenet_version": __version__, "model_config": json.dumps(model.config.to_dict())}
    metadata.update(extra or {})
    write_bytes(path, safetensors_bytes(tensors, metadata=metadata))
    return Path(path)


def resolve_weights(run_or_checkpoint: str | os.PathLike) -> Path:
    path = Path(run_or_checkpoint)
    if path.is_dir():
        path = path / WEIGHTS_FILE
    if not path.is_file():
        raise CheckpointError(f"{run_or_checkpoint}: no such run directory or checkpoint file")
    return path


def read_checkpoint(path: Path) -> tuple[LeNetConfig, dict[str, torch.Tensor], dict[str, str]]:
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            config = _model_config(path, metadata)  # checked before any tensor is read
            tensors = {key: f.get_tensor(key) for key in f.keys()}
    except CheckpointError:
        raise
    except Exception as e:  # safetensors raises several types for a damaged file
        raise CheckpointError(f"{path}: not a readable safetensors checkpoint ({type(e).__name__}: {e})") from None
    return config, tensors, metadata


def _model_config(path: Path, metadata: dict[str, str]) -> LeNetConfig:
    if metadata.get("format") != FORMAT or "model_config" not in metadata:
        raise CheckpointError(f"{path}: not a lenet checkpoint (no lenet model config in its metadata)")
    try:
        return LeNetConfig.from_dict(json.loads(metadata["model_config"]))
    except (ValueError, RecursionError, LenetError) as e:  # ValueError: not JSON; RecursionError: nested too deep
        raise CheckpointError(f"{path}: bad model config in checkpoint ({e})") from None


def load(run_or_checkpoint: str | os.PathLike, device: torch.device | str = "cpu") -> LeNet:
    """A ready model (eval mode) from a run directory or a .safetensors checkpoint."""
    path = resolve_weights(run_or_checkpoint)
    config, tensors, _ = read_checkpoint(path)
    with torch.device("meta"):  # the model's shapes, without allocating its weights
        expected = LeNet(config).state_dict()
    problems = [f"missing {key}" for key in expected.keys() - tensors.keys()]
    problems += [f"unexpected {short_repr(key)}" for key in tensors.keys() - expected.keys()]
    describe = lambda t: f"{t.dtype} {list(t.shape)}"  # noqa: E731
    problems += [
        f"{key} is {describe(tensors[key])}, not {describe(expected[key])}"
        for key in expected.keys() & tensors.keys()
        if tensors[key].shape != expected[key].shape
        or tensors[key].is_floating_point() != expected[key].is_floating_point()
    ]
    if problems:
        shown = "; ".join(sorted(problems)[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
        raise CheckpointError(f"{path}: the weights do not fit the model config they came with ({shown})")
    model = LeNet(config)
    model.load_state_dict(tensors, strict=True)
    return model.to(device).eval()
