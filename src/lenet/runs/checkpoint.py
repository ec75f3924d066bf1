"""Model weights on disk: safetensors (loading never runs code), the model config inside.

A checkpoint is self-describing: its metadata holds the LeNetConfig it was built from and
the test-time views it predicts with, so `load()` needs nothing but the file (or the run
directory holding `model.safetensors`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field, Json
from safetensors import safe_open
from safetensors.torch import save as safetensors_bytes

from lenet.core.version import __version__
from lenet.core.errors import CheckpointError, LenetError, RunError, short_repr
from lenet.core.files import write_bytes
from lenet.data.registry import DataSpec
from lenet.models.lenet import LeNet, LeNetConfig
from lenet.models.views import Classifier, Views
from lenet.runs.compat import checkpoint_data, checkpoint_data_digest, model_and_views
from lenet.runs.record import Record, parse

WEIGHTS_FILE = "model.safetensors"
FORMAT = "lenet.model.v1"


class CheckpointMetadata(Record):
    """model.safetensors' metadata (safetensors keeps string values: the mappings are JSON text in them)."""

    FILE = "model.safetensors (metadata)"
    ZH = {"format": "固定为 lenet.model.v1", "lenet_version": "写入它的 lenet 版本",
          "model_config": "网络的配置（LeNetConfig），JSON 文本", "views": "测试时的视图，JSON 文本",
          "data": "模型所认识的数据集：名称、类别、均值、标准差、摘要，JSON 文本",
          "epoch": "运行中保存时已完成的轮数"}

    format: Literal["lenet.model.v1"] = Field(description="always lenet.model.v1")
    lenet_version: str = Field("", description="the lenet that wrote it")
    net: Json[dict[str, Any]] = Field(alias="model_config", description="the network's configuration (LeNetConfig), as "
                                                                        "JSON text")
    views: Json[dict[str, Any] | None] | None = Field(None, description="the test-time views, as JSON text")
    data: Json[dict[str, Any]] | None = Field(None, description="the data set the model knows (name, classes, mean, "
                                                               "std, digest), as JSON text; absent: Fashion-MNIST")
    epoch: str | None = Field(None, pattern="^[0-9]{1,9}$", description="epochs done, in a run's checkpoint")


def save_model(model: Classifier | LeNet, path: str | os.PathLike, extra: dict[str, str] | None = None) -> Path:
    """Write the network's weights, its config and its test-time views (none for a bare LeNet) atomically."""
    model = model if isinstance(model, Classifier) else Classifier(model)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.net.state_dict().items()}
    metadata = {
        "format": FORMAT, "lenet_version": __version__,
        "model_config": json.dumps(model.net.config.to_dict()), "views": json.dumps(model.views.to_dict()),
        "data": json.dumps(model.data.to_dict()),
    }  # fmt: skip
    metadata.update(extra or {})
    write_bytes(path, safetensors_bytes(tensors, metadata=metadata))
    return Path(path)


def resolve_weights(run_or_checkpoint: str | os.PathLike) -> Path:
    path = Path(run_or_checkpoint)
    if path.is_dir():
        if not (path / WEIGHTS_FILE).is_file():
            raise CheckpointError(f"{path}: a directory without {WEIGHTS_FILE}; " + _why_no_weights(path))
        path = path / WEIGHTS_FILE
    if not path.is_file():
        raise CheckpointError(f"{run_or_checkpoint}: no such run directory or checkpoint file")
    if path.suffix.lower() in EXPORTED and not _looks_like_safetensors(path):
        raise CheckpointError(exported_model(path))
    return path


def exported_model(path: Path) -> str:
    """What to do instead, when a command that wants a run is given an exported model file."""
    return (f"{path.name} is an exported model ({EXPORTED[path.suffix.lower()]}), which lenet does not load; "
            "give the run directory it was exported from (or its model.safetensors)")


# What `lenet export` and PyTorch write, that a command wanting a run may be given instead.
EXPORTED = {".onnx": "ONNX", ".pt": "TorchScript or a pickle", ".pth": "a pickle", ".torchscript": "TorchScript"}


def _looks_like_safetensors(path: Path) -> bool:
    """safetensors begins with its header's length (8 bytes, little-endian) and the header's '{'."""
    with open(path, "rb") as f:
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < path.stat().st_size


def _why_no_weights(run_dir: Path) -> str:
    if (run_dir / "train_state.pt").is_file():  # runs.STATE_FILE; runs imports this module
        return f"its training state is there: lenet train --resume {run_dir} writes them again"
    if (run_dir / "config.json").is_file():
        return f"a run whose first epoch never finished: lenet train --resume {run_dir} trains it, or remove it"
    return "not a lenet run directory"


def read_checkpoint(path: Path) -> tuple[LeNetConfig, Views, DataSpec, dict[str, torch.Tensor], dict[str, str]]:
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            config, views, data = _model_config(path, metadata)  # checked before any tensor is read
            tensors = {key: f.get_tensor(key) for key in f.keys()}
    except CheckpointError:
        raise
    except Exception as e:  # safetensors raises several types for a damaged file
        raise CheckpointError(f"{path}: not a readable safetensors checkpoint ({type(e).__name__}: {e})") from None
    return config, views, data, tensors, metadata


def _model_config(path: Path, metadata: dict[str, str]) -> tuple[LeNetConfig, Views, DataSpec]:
    if metadata.get("format") != FORMAT or "model_config" not in metadata:
        raise CheckpointError(f"{path}: not a lenet checkpoint (no lenet model config in its metadata)")
    try:
        record = parse(CheckpointMetadata, metadata, f"{path} (metadata)")
        config, views = model_and_views(record.net, record.views)
        return config, views, checkpoint_data(record.data)
    except RunError as e:
        raise CheckpointError(str(e)) from None
    except LenetError as e:
        raise CheckpointError(f"{path}: bad model config in checkpoint ({e})") from None


def load(run_or_checkpoint: str | os.PathLike, device: torch.device | str = "cpu") -> Classifier:
    """A ready model (eval mode, with its test-time views) from a run directory or a .safetensors checkpoint."""
    path = resolve_weights(run_or_checkpoint)
    config, views, data, tensors, _ = read_checkpoint(path)
    data = checkpoint_data_digest(path, data)
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
    net = LeNet(config)
    net.load_state_dict(tensors, strict=True)
    try:
        return Classifier(net, views, data).to(device).eval()
    except LenetError as e:
        raise CheckpointError(f"{path}: {e}") from None
