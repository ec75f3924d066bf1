"""A run directory: its files' names, claiming a directory, and a run read back whole.

    runs/NAME/
      config.json        the resolved config: recipe, model, seed, device, versions, data hashes (config.py)
      metrics.csv        one row per epoch (metrics.py)
      summary.json       the final results (summary.py); the last file a run writes
      model.safetensors  the weights, with the model config in their metadata (checkpoint.py)
      train_state.pt     model, optimizer, schedule and RNG states after the last epoch (state.py)
      export.json        what `lenet export` wrote (exports.py)
      report.html        config, results and plots in one self-contained page (`lenet report`)
      plots/             the report's figures as PNG files
    runs/GROUP/seeds.json   a --seeds study: the per-seed runs are GROUP/seed-K/ (summary.py)

docs/run-format.md describes every file, generated from the schemas.
"""

from __future__ import annotations

import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lenet.core.errors import LenetError, RunError
from lenet.core.text import rounded
from lenet.core.version import __version__
from lenet.models.lenet import LeNetConfig
from lenet.models.views import Classifier, Views
from lenet.runs.checkpoint import EXPORTED, WEIGHTS_FILE, exported_model, save_model
from lenet.runs.compat import model_and_views, read_config
from lenet.runs.config import CONFIG_FILE, ConfigRecord
from lenet.runs.metrics import METRICS_FILE, EpochMetrics, read_metrics, write_metrics
from lenet.runs.record import read_record, write_record
from lenet.runs.state import STATE_FILE, TrainStateRecord, write_train_state
from lenet.runs.summary import SEEDS_FILE, SUMMARY_FILE, SeedsRecord, SummaryRecord

REPORT_FILE, PLOTS_DIR = "report.html", "plots"


@dataclass(frozen=True)
class Run:
    """A run directory's files, read back and checked. `summary` is None while the run is unfinished."""

    path: Path
    config: ConfigRecord
    metrics: list[dict[str, float]]  # one row per epoch, metrics.csv's columns
    summary: SummaryRecord | None

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def net_config(self) -> LeNetConfig:
        if self.config.net is None:
            raise RunError(f"{self.path}/{CONFIG_FILE}: no model_config")
        return model_and_views(self.config.net, self.config.views)[0]

    @property
    def views(self) -> Views:
        """The test-time views of the run's final figures (per-epoch figures skip the shifts)."""
        try:
            return model_and_views(self.config.net or {}, self.config.views)[1]
        except LenetError:
            return Views()


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
    """config.json from a TrainConfig's record (training/records.py), with the environment and the time."""
    record = ConfigRecord.model_validate({**config, "environment": environment(),
                                          "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")})  # fmt: skip
    write_record(run_dir / CONFIG_FILE, record)


def save_epoch(run_dir: Path, state: TrainStateRecord, history: list[EpochMetrics], model: Classifier) -> None:
    """What a finished epoch leaves on disk. The state first: it alone decides where a resumed run goes on from."""
    write_train_state(run_dir, state)
    write_metrics(run_dir, history)
    save_model(model, weights_path(run_dir), {"epoch": str(len(history))})


def write_summary(run_dir: Path, summary: dict[str, Any]) -> None:
    write_record(run_dir / SUMMARY_FILE, SummaryRecord.model_validate(rounded(summary)))


def write_seeds(group_dir: Path, recipe: dict[str, Any], stats: dict[str, Any]) -> None:
    write_record(group_dir / SEEDS_FILE, SeedsRecord.model_validate({"recipe": recipe, "split": "test",
                                                                     **rounded(stats)}))  # fmt: skip


def weights_path(run_dir: Path) -> Path:
    return run_dir / WEIGHTS_FILE


def is_finished(run_dir: str | Path) -> bool:
    """Whether a run wrote its summary, the last thing a run writes."""
    return (Path(run_dir) / SUMMARY_FILE).is_file()


def read_summary(run_dir: Path) -> SummaryRecord:
    return read_record(run_dir / SUMMARY_FILE, SummaryRecord)


def read_run(path: str | Path) -> Run:
    path = Path(path)
    if path.is_file() and path.suffix.lower() in EXPORTED:
        raise RunError(exported_model(path))
    if not path.is_dir():
        raise RunError(f"{path}: no such run directory")
    if not (path / METRICS_FILE).is_file():
        raise RunError(f"{path}: no {METRICS_FILE}, so not a lenet run (or its first epoch never finished)")
    summary = read_summary(path) if is_finished(path) else None
    return Run(path, read_config(path), read_metrics(path), summary)


def run_records(run_dir: Path) -> tuple[ConfigRecord | None, SummaryRecord | None]:
    """A directory's config.json and summary.json where it has them (a checkpoint's folder may be no run)."""
    config = read_config(run_dir) if (run_dir / CONFIG_FILE).is_file() else None
    summary = read_summary(run_dir) if is_finished(run_dir) else None
    return config, summary
