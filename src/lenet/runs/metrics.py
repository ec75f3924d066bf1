"""metrics.csv: one row per epoch, written after each epoch, read by the report, compare and sweeps."""

from __future__ import annotations

import csv
import io
import math
from dataclasses import asdict, fields
from pathlib import Path
from typing import ClassVar

from pydantic import Field
from pydantic.dataclasses import dataclass

from lenet.core.errors import RunError, short_repr
from lenet.core.files import write_text
from lenet.core.text import rounded

METRICS_FILE = "metrics.csv"
REQUIRED_COLUMNS = ("epoch", "train_loss", "train_accuracy")  # what every lenet has written


@dataclass(frozen=True)
class EpochMetrics:
    """One epoch of a run: a row of metrics.csv (an epoch not judged, --eval-every, has empty eval cells).
    A dataclass (checked by pydantic, each field strictly), so that `dataclasses.replace` and `asdict` take it
    as before, and a row is made from a dict where a schema holds rows (train_state.pt's history)."""

    FILE: ClassVar[str] = METRICS_FILE
    ZH: ClassVar[dict[str, str]] = {"epoch": "轮次，从 1 数起", "train_loss": "训练损失（本轮平均）", "train_accuracy": "训练准确率",
          "eval_split": "评估所用的划分：val 或 test", "eval_loss": "评估损失（本轮未评估则为空）",
          "eval_accuracy": "评估准确率（本轮未评估则为空）", "seconds": "训练所用秒数（不含评估）",
          "images_per_s": "每秒训练的图像数", "eval_seconds": "评估所用秒数", "lr": "本轮开始时的学习率"}

    epoch: int = Field(strict=True, ge=1, description="the epoch, counted from 1")
    train_loss: float = Field(strict=True, description="training loss, mean over the epoch")
    train_accuracy: float = Field(strict=True, ge=0, le=1, description="training accuracy over the epoch")
    eval_split: str = Field(strict=True, pattern="^(val|test)$", description="what the epoch is judged on: val or test")
    eval_loss: float | None = Field(strict=True, description="loss on the judged split (empty for an epoch not judged)")
    eval_accuracy: float | None = Field(strict=True, ge=0, le=1, description="accuracy on the judged split (empty when not judged)")
    seconds: float = Field(strict=True, ge=0, description="seconds of training; evaluation is timed apart")
    images_per_s: float = Field(strict=True, ge=0, description="training images a second")
    eval_seconds: float = Field(strict=True, ge=0, description="seconds of evaluation")
    lr: float = Field(strict=True, description="the learning rate at the epoch's start")


def write_metrics(run_dir: Path, history: list[EpochMetrics]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=[f.name for f in fields(EpochMetrics)])
    writer.writeheader()
    writer.writerows(rounded(asdict(row)) for row in history)
    write_text(run_dir / METRICS_FILE, buffer.getvalue())


def read_metrics(run_dir: Path) -> list[dict[str, float]]:
    """metrics.csv's rows, each cell a float (NaN for an epoch not judged), eval columns named by split."""
    path = run_dir / METRICS_FILE
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or ())]
            if missing:
                raise RunError(f"{path}: no {missing[0]} column, so not a lenet metrics file")
            rows = [by_split(row, f"{path} line {n}") for n, row in enumerate(reader, 2)]
    except FileNotFoundError:
        raise RunError(f"{path}: missing") from None
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise RunError(f"{path}: not a readable metrics file ({type(e).__name__})") from None
    if not rows:
        raise RunError(f"{path}: no epochs in it")
    for split in ("train", "val", "test"):  # a split's figures come in pairs: its loss beside its accuracy
        loss, accuracy = f"{split}_loss" in rows[0], f"{split}_accuracy" in rows[0]
        if loss != accuracy:
            raise RunError(f"{path}: a {split} {'loss' if loss else 'accuracy'} column without its "
                           f"{'accuracy' if loss else 'loss'}, so not a lenet metrics file")  # fmt: skip
    return rows


def by_split(row: dict[str, str | float | None], where: str = "metrics row") -> dict[str, float]:
    """A metrics row with its eval columns named after their split: test_loss, val_accuracy, ..."""
    split = row.get("eval_split") or "test"
    if split not in ("val", "test"):
        raise RunError(f"{where}: eval_split is val or test, not {short_repr(split)}")
    renamed = {"eval_loss": f"{split}_loss", "eval_accuracy": f"{split}_accuracy"}
    return {renamed.get(key, key): _number(value, key, where) for key, value in row.items()
            if key != "eval_split" and key is not None}


def _number(value: str | float | None, column: str, where: str) -> float:
    """A metrics cell as a float; an epoch that was not judged (empty, or None) is NaN."""
    if value in ("", None):
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        raise RunError(f"{where}: column {column} holds {short_repr(value)}, not a number") from None


def judged(rows: list[dict[str, float]], column: str) -> list[dict[str, float]]:
    """The rows that have `column`: the epochs judged (all of them, unless --eval-every said otherwise)."""
    return [row for row in rows if not math.isnan(row.get(column, math.nan))]
