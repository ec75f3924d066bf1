"""A run directory and the files in it: their names, what goes in them, every reader and writer.

No other module names a run file or parses one; every write is atomic.

    runs/NAME/
      config.json        the resolved config: recipe, model, seed, device, versions, data hashes
      metrics.csv        one row per epoch
      summary.json       the final results (test metrics, per-class accuracy, confusion matrix)
      model.safetensors  the weights, with the model config in their metadata
      train_state.pt     model, optimizer, schedule and RNG states after the last epoch (--resume)
      report.html        config, results and plots in one self-contained page (`lenet report`)
      plots/             the report's figures as PNG files
    runs/GROUP/seeds.json   a --seeds study: the per-seed runs are GROUP/seed-K/
"""

from __future__ import annotations

import csv
import io
import json
import math
import platform
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from lenet.core.version import __version__
from lenet.training.checkpoint import WEIGHTS_FILE, save_model
from lenet.training.compat import model_and_views
from lenet.core.errors import LenetError, RunError
from lenet.core.files import atomic_open, write_json, write_text
from lenet.core.text import rounded
from lenet.models.lenet import LeNetConfig
from lenet.models.views import Classifier, Views

CONFIG_FILE, METRICS_FILE, SUMMARY_FILE = "config.json", "metrics.csv", "summary.json"
STATE_FILE = "train_state.pt"  # optimizer, schedule, RNG states: what --resume needs
REPORT_FILE, PLOTS_DIR = "report.html", "plots"
SEEDS_FILE = "seeds.json"


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

    @property
    def net_config(self) -> LeNetConfig:
        return model_and_views(self.config["model_config"], self.config.get("views"))[0]

    @property
    def views(self) -> Views:
        """The test-time views of the run's final figures (per-epoch figures skip the shifts)."""
        try:
            return model_and_views(self.config["model_config"], self.config.get("views"))[1]
        except (KeyError, TypeError, LenetError):
            return Views()


@dataclass(frozen=True)
class EpochMetrics:
    epoch: int
    train_loss: float
    train_accuracy: float
    eval_split: str  # "test", or "val" for a run with a validation split
    eval_loss: float | None  # None for an epoch not judged (--eval-every): an empty cell in metrics.csv
    eval_accuracy: float | None
    seconds: float  # training only; evaluation is timed apart
    images_per_s: float
    eval_seconds: float
    lr: float


def check_run_name(name: str) -> str:
    """A run name is one path component, so a run can never land outside its --out directory."""
    if not isinstance(name, str) or not name or name in (".", "..") or name.startswith(".") \
            or "/" in name or "\\" in name or "\0" in name:  # fmt: skip
        raise RunError(f"run name {name!r} must be one plain directory name: no '/', no '..', not hidden or empty")
    return name


def create_run_dir(out: str | Path, name: str) -> Path:
    """Make out/name, atomically: of two processes asking for one name, exactly one gets it."""
    path = Path(out) / check_run_name(name)
    if not _claim(path):
        raise RunError(f"run directory {path} already exists; choose another --name or remove it")
    return path


def create_unique_run_dir(out: str | Path, base: str) -> Path:
    """out/base, or out/base-2, base-3, ... where taken: mkdir decides, so racing processes get distinct ones."""
    check_run_name(base)
    for n in range(1, 1000):
        path = Path(out) / (base if n == 1 else f"{base}-{n}")
        if _claim(path):
            return path
    raise RunError(f"no free run directory name for {base} in {out}")


def _claim(path: Path) -> bool:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.mkdir()
    except FileExistsError:
        return False
    except OSError as e:
        raise RunError(f"cannot create run directory {path}: {e.strerror}") from None
    return True


def default_run_name(recipe_name: str, what: str) -> str:
    """RECIPE-WHAT-TIMESTAMP (WHAT: seed3, 10seeds); create_unique_run_dir adds -2, -3 on a clash."""
    return f"{Path(recipe_name).stem}-{what}-{time.strftime('%Y%m%d-%H%M%S')}"


def environment() -> dict[str, Any]:
    return {
        "lenet": __version__,
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "command": sys.argv,
    }


def write_config(run_dir: Path, config: dict[str, Any]) -> None:
    write_json(run_dir / CONFIG_FILE, {**config, "environment": environment(),
                                       "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")})  # fmt: skip


def save_epoch(run_dir: Path, state: dict[str, Any], history: list[EpochMetrics], model: Classifier) -> None:
    """What a finished epoch leaves on disk. The state first: it alone decides where a resumed run goes on from."""
    write_train_state(run_dir, state)
    write_metrics(run_dir, history)
    save_model(model, weights_path(run_dir), {"epoch": str(len(history))})


def write_metrics(run_dir: Path, history: list[EpochMetrics]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(asdict(history[0])) if history else ["epoch"])
    writer.writeheader()
    writer.writerows(rounded(asdict(row)) for row in history)
    write_text(run_dir / METRICS_FILE, buffer.getvalue())


def write_summary(run_dir: Path, summary: dict[str, Any]) -> None:
    write_json(run_dir / SUMMARY_FILE, rounded(summary))


def write_seeds(group_dir: Path, recipe: dict[str, Any], stats: dict[str, Any]) -> None:
    write_json(group_dir / SEEDS_FILE, {"recipe": recipe, "split": "test", **rounded(stats)})


def read_config(run_dir: Path) -> dict[str, Any]:
    if not (run_dir / CONFIG_FILE).is_file():
        raise RunError(f"{run_dir}: not a run directory (no {CONFIG_FILE})")
    return read_json(run_dir / CONFIG_FILE)


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
        raise RunError(f"{path}: not a loadable training state ({type(e).__name__})") from None


def weights_path(run_dir: Path) -> Path:
    return run_dir / WEIGHTS_FILE


# --- reading a run back ---------------------------------------------------------------


def read_run(path: str | Path) -> Run:
    path = Path(path)
    if not path.is_dir():
        raise RunError(f"{path}: no such run directory")
    if not (path / METRICS_FILE).is_file():
        raise RunError(f"{path}: no {METRICS_FILE}, so not a lenet run (or its first epoch never finished)")
    summary = read_json(path / SUMMARY_FILE) if (path / SUMMARY_FILE).is_file() else None
    return Run(path, read_config(path), read_metrics(path), summary)


def read_optional_json(path: Path) -> dict[str, Any]:
    """A JSON object lenet wrote, or {} where there is none or it cannot be read (for what is only shown)."""
    try:
        return read_json(path)
    except RunError:
        return {}


def by_split(row: dict[str, Any]) -> dict[str, float]:
    """A metrics row with its eval columns named after their split: test_loss, val_accuracy, ..."""
    split = row.get("eval_split", "test")
    renamed = {"eval_loss": f"{split}_loss", "eval_accuracy": f"{split}_accuracy"}
    return {renamed.get(key, key): _number(value) for key, value in row.items() if key != "eval_split"}


def _number(value: str | float | None) -> float:
    """A metrics cell as a float; an epoch that was not judged (empty, or None) is NaN."""
    return math.nan if value in ("", None) else float(value)


def judged(rows: list[dict[str, float]], column: str) -> list[dict[str, float]]:
    """The rows that have `column`: the epochs judged (all of them, unless --eval-every said otherwise)."""
    return [row for row in rows if not math.isnan(row.get(column, math.nan))]


def read_metrics(run_dir: Path) -> list[dict[str, float]]:
    path = run_dir / METRICS_FILE
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = [by_split(row) for row in csv.DictReader(f)]
    except (ValueError, TypeError) as e:
        raise RunError(f"{path}: not a lenet metrics file ({e})") from None
    if not rows or "epoch" not in rows[0]:
        raise RunError(f"{path}: no epochs in it")
    return rows


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object lenet wrote (config.json, summary.json, seeds.json, export records)."""
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunError(f"{path}: missing, so not a complete lenet run directory") from None
    except (OSError, ValueError, UnicodeDecodeError, RecursionError) as e:
        raise RunError(f"{path}: not readable as JSON ({e})") from None
    if not isinstance(obj, dict):
        raise RunError(f"{path}: not a JSON object")
    return obj
