"""`lenet runs [DIR]`: the runs in a directory, newest first, one line each, read through this package only.

A run is a directory with config.json; a `--seeds` group (GROUP/seed-K/) and a sweep (SWEEP/trial-N/ or
SWEEP/trial-N/seed-K/) are looked into for theirs. A run whose files cannot be read is listed as damaged,
with the reason in one line, never an exception.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from lenet.core.errors import LenetError, RunError
from lenet.core.stats import wilson_interval
from lenet.core.text import clip
from lenet.data.registry import shown_name
from lenet.runs.compat import read_config
from lenet.runs.config import CONFIG_FILE
from lenet.runs.directory import is_finished, read_summary
from lenet.runs.metrics import METRICS_FILE, read_metrics
from lenet.runs.state import STATE_FILE
from lenet.runs.sweeps import FAILED_FILE, read_failed

STATES = ("finished", "interrupted", "failed", "empty", "damaged")
INTERVAL_BELOW = 1000  # a test set of fewer images gets its accuracy's 95% Wilson interval
DEPTH = 3  # SWEEP/trial-N/seed-K/: the deepest a run sits below the directory listed
NOT_RUNS = {"plots", "tensorboard", "tune"}  # folders inside runs and sweeps that hold no run


@dataclass(frozen=True)
class RunListing:
    """One run as `lenet runs` lists it; None where the run has no such figure (yet)."""

    name: str  # relative to the directory listed: NAME, GROUP/seed-K, SWEEP/trial-N
    state: str  # one of STATES
    dataset: str | None = None  # as shown to others (shown_name): folder:shapes, never the whole path
    recipe: str | None = None
    epochs_done: int | None = None
    epochs_planned: int | None = None
    test_accuracy: float | None = None
    test_correct: int | None = None
    test_total: int | None = None
    test_interval: tuple[float, float] | None = None  # 95% Wilson, under INTERVAL_BELOW test images
    train_seconds: float | None = None
    started: str | None = None
    reason: str | None = None  # why a run failed, or why it is damaged

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "test_interval": list(self.test_interval) if self.test_interval else None}


def list_runs(directory: str | os.PathLike = "runs") -> list[RunListing]:
    """Every run under `directory`, newest first (by when it began, else by its config.json's time)."""
    root = Path(directory)
    if not root.is_dir():
        raise RunError(f"{directory}: no such directory")
    found = [(_listing(run, root), run) for run in _run_dirs(root)]
    found.sort(key=lambda pair: (-_when(pair[1], pair[0]), pair[0].name))
    return [listing for listing, _ in found]


def _run_dirs(root: Path) -> list[Path]:
    """The run directories under `root` (root itself, if it is one), not looking inside a run."""
    if (root / CONFIG_FILE).is_file():
        return [root]
    found, level = [], [root]
    for _ in range(DEPTH):
        below = []
        for directory in level:
            for child in sorted(_subdirectories(directory)):
                (found if (child / CONFIG_FILE).is_file() else below).append(child)
        level = below
    return found


def _subdirectories(directory: Path) -> list[Path]:
    try:
        return [p for p in directory.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name not in NOT_RUNS]
    except OSError:
        return []


def _listing(run_dir: Path, root: Path) -> RunListing:
    name = str(root) if run_dir == root else str(run_dir.relative_to(root))
    try:
        return _read(run_dir, name)
    except (LenetError, OSError, ValueError) as e:
        why = clip(str(e).replace(f"{run_dir}/", "").replace(str(run_dir), name))
        return RunListing(name, "damaged", started=_started(run_dir), reason=why)


def _started(run_dir: Path) -> str | None:
    """When a damaged run began, if its config.json can say (its place in the list)."""
    try:
        return read_config(run_dir).started or None
    except (LenetError, OSError, ValueError):
        return None


def _read(run_dir: Path, name: str) -> RunListing:
    config = read_config(run_dir)
    planned = config.recipe.get("epochs")
    common = {"dataset": shown_name(config.data.name), "recipe": config.recipe_name, "started": config.started or None,
              "epochs_planned": planned if isinstance(planned, int) and not isinstance(planned, bool) else None}  # fmt: skip
    if is_finished(run_dir):
        summary = read_summary(run_dir)
        test = summary.test
        interval = wilson_interval(test.correct, test.total) if 0 < test.total < INTERVAL_BELOW else None
        return RunListing(name, "finished", **common, epochs_done=summary.epochs, test_accuracy=test.accuracy,
                          test_correct=test.correct, test_total=test.total, test_interval=interval,
                          train_seconds=summary.train_seconds)  # fmt: skip
    done = len(read_metrics(run_dir)) if (run_dir / METRICS_FILE).is_file() else 0
    if (run_dir / FAILED_FILE).is_file():
        return RunListing(name, "failed", **common, epochs_done=done, reason=clip(read_failed(run_dir).error))
    if (run_dir / STATE_FILE).is_file() or done:
        return RunListing(name, "interrupted", **common, epochs_done=done)
    return RunListing(name, "empty", **common, epochs_done=0)


def _when(run_dir: Path, listing: RunListing) -> float:
    """When a run began: config.json's `started`, else the file's modification time (0 where neither is there)."""
    if listing.started:
        try:
            return datetime.strptime(listing.started, "%Y-%m-%dT%H:%M:%S%z").timestamp()
        except ValueError:
            pass
    try:
        return (run_dir / CONFIG_FILE).stat().st_mtime
    except OSError:
        return -math.inf
