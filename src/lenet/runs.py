"""A run directory and the files in it. Every write is atomic.

    runs/NAME/
      config.json        the resolved config: recipe, model, seed, device, versions, data hashes
      metrics.csv        one row per epoch
      summary.json       the final results (test metrics, per-class accuracy, confusion matrix)
      model.safetensors  the weights, with the model config in their metadata
      train_state.pt     model, optimizer, schedule and RNG states after the last epoch (--resume)
      report.html        config, results and plots in one self-contained page (`lenet report`)
      plots/             the report's figures as PNG files
"""

from __future__ import annotations

import csv
import io
import json
import platform
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from . import __version__
from .checkpoint import WEIGHTS_FILE
from .errors import CheckpointError, LenetError
from .files import atomic_open, write_json, write_text

CONFIG_FILE, METRICS_FILE, SUMMARY_FILE = "config.json", "metrics.csv", "summary.json"
STATE_FILE = "train_state.pt"  # optimizer, schedule, RNG states: what --resume needs
REPORT_FILE, PLOTS_DIR = "report.html", "plots"


@dataclass(frozen=True)
class Run:
    """A run directory's files, read back. `summary` is None while the run is unfinished."""

    path: Path
    config: dict[str, Any]
    metrics: list[dict[str, float]]  # one row per epoch, metrics.csv's columns
    summary: dict[str, Any] | None

    @property
    def name(self) -> str:
        return self.path.name


@dataclass(frozen=True)
class EpochMetrics:
    epoch: int
    train_loss: float
    train_accuracy: float
    eval_split: str  # "test", or "val" for a run with a validation split
    eval_loss: float
    eval_accuracy: float
    seconds: float  # training only; evaluation is timed apart
    images_per_s: float
    eval_seconds: float
    lr: float


def create_run_dir(out: str | Path, name: str) -> Path:
    """Make out/name; refuse to reuse a directory that already holds a run."""
    path = Path(out) / name
    # A kill during the very first write leaves only a hidden temporary file: not a run yet.
    if path.exists() and any(not p.name.startswith(".") for p in path.iterdir()):
        raise LenetError(f"run directory {path} already exists; choose another --name or remove it")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise LenetError(f"cannot create run directory {path}: {e.strerror}") from None
    return path


def default_run_name(recipe_name: str, what: str, out: str | Path) -> str:
    """RECIPE-WHAT-TIMESTAMP (WHAT: seed3, 10seeds), made unique within `out`."""
    base = f"{recipe_name}-{what}-{time.strftime('%Y%m%d-%H%M%S')}"
    name, n = base, 2
    while (Path(out) / name).exists():
        name, n = f"{base}-{n}", n + 1
    return name


def environment() -> dict[str, Any]:
    return {
        "lenet": __version__,
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "command": sys.argv,
    }


def write_config(run_dir: Path, config: dict[str, Any]) -> None:
    write_json(run_dir / CONFIG_FILE, config)


def write_metrics(run_dir: Path, history: list[EpochMetrics]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(asdict(history[0])) if history else ["epoch"])
    writer.writeheader()
    writer.writerows(asdict(row) for row in history)
    write_text(run_dir / METRICS_FILE, buffer.getvalue())


def write_summary(run_dir: Path, summary: dict[str, Any]) -> None:
    write_json(run_dir / SUMMARY_FILE, summary)


def read_config(run_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((run_dir / CONFIG_FILE).read_text())
    except FileNotFoundError:
        raise LenetError(f"{run_dir}: not a run directory (no {CONFIG_FILE})") from None
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{run_dir / CONFIG_FILE}: unreadable ({e})") from None


def write_train_state(run_dir: Path, state: dict[str, Any]) -> None:
    with atomic_open(run_dir / STATE_FILE) as f:
        torch.save(state, f)


def read_train_state(run_dir: Path) -> dict[str, Any] | None:
    """The training state, loaded without running code (weights_only); None before epoch 1 ends."""
    path = run_dir / STATE_FILE
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for damaged or unsafe files
        raise CheckpointError(f"{path}: not a loadable training state ({type(e).__name__})") from None


def weights_path(run_dir: Path) -> Path:
    return run_dir / WEIGHTS_FILE


# --- reading a run back ---------------------------------------------------------------


def read_run(path: str | Path) -> Run:
    path = Path(path)
    if not path.is_dir():
        raise LenetError(f"{path}: no such run directory")
    if not (path / METRICS_FILE).is_file():
        raise LenetError(f"{path}: no {METRICS_FILE}, so not a lenet run (or its first epoch never finished)")
    summary = _read_json(path / SUMMARY_FILE) if (path / SUMMARY_FILE).is_file() else None
    return Run(path, _read_json(path / CONFIG_FILE), read_metrics(path), summary)


def by_split(row: dict[str, Any]) -> dict[str, float]:
    """A metrics row with its eval columns named after their split: test_loss, val_accuracy, ..."""
    split = row.get("eval_split", "test")
    renamed = {"eval_loss": f"{split}_loss", "eval_accuracy": f"{split}_accuracy"}
    return {renamed.get(key, key): float(value) for key, value in row.items() if key != "eval_split"}


def read_metrics(run_dir: Path) -> list[dict[str, float]]:
    path = run_dir / METRICS_FILE
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = [by_split(row) for row in csv.DictReader(f)]
    except (ValueError, TypeError) as e:
        raise LenetError(f"{path}: not a lenet metrics file ({e})") from None
    if not rows or "epoch" not in rows[0]:
        raise LenetError(f"{path}: no epochs in it")
    return rows


def _read_json(path: Path) -> dict[str, Any]:
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LenetError(f"{path}: missing, so not a complete lenet run directory") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise LenetError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(obj, dict):
        raise LenetError(f"{path}: not a JSON object")
    return obj
