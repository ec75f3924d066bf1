"""train_state.pt: everything a run needs to go on after its last completed epoch (--resume).

Written with torch.save after each epoch and read with weights_only=True (never running code), then
checked against this schema before any of it reaches the model or the optimizer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from pydantic import Field

from lenet.core.errors import RunError
from lenet.core.files import atomic_open
from lenet.runs.metrics import EpochMetrics
from lenet.runs.record import Record, Versioned, parse

STATE_FILE = "train_state.pt"


class RngStates(Record):
    """The generators' states, each a CPU uint8 tensor as torch.Generator.get_state gives it."""

    FILE = "train_state.pt: rng"
    ZH = {"shuffle": "打乱顺序的生成器状态", "augment": "数据增强的生成器状态", "torch": "全局 CPU 生成器状态",
          "cuda": "CUDA 生成器状态（仅在 CUDA 上）"}

    shuffle: torch.Tensor = Field(description="the shuffling generator")
    augment: torch.Tensor = Field(description="the augmentation generator (a CPU tensor, whatever its device)")
    torch_: torch.Tensor = Field(alias="torch", description="the global CPU generator")
    cuda: torch.Tensor | None = Field(None, description="the CUDA generator, on CUDA only")


class TrainStateRecord(Versioned):
    """train_state.pt: a run's state after its last completed epoch."""

    FILE = STATE_FILE
    ZH = {"format_version": "文件格式的版本", "epoch": "已完成的轮数", "model": "网络的权重（state_dict）",
          "optimizer": "优化器的状态", "schedule": "学习率计划的状态（无计划则为 null）", "rng": "各生成器的状态",
          "history": "每轮的指标，同 metrics.csv 的行", "warnings": "训练中的警告",
          "train_seconds": "已用的训练秒数", "ema": "权重滑动平均的状态（配方启用时）"}

    epoch: int = Field(ge=0, le=2**31, description="epochs completed")
    model: dict[str, torch.Tensor] = Field(description="the network's weights (its state_dict)")
    optimizer: dict[str, Any] = Field(description="the optimizer's state_dict")
    schedule: dict[str, Any] | None = Field(None, description="the learning-rate schedule's state_dict")
    rng: RngStates = Field(description="the generators' states")
    history: list[EpochMetrics] = Field(description="every completed epoch's row of metrics.csv")
    warnings: list[str] = Field([], description="what training warned of")
    train_seconds: float = Field(0.0, ge=0, description="seconds of training so far")
    ema: dict[str, Any] | None = Field(None, description="the weights' moving average, when the recipe keeps one")


def write_train_state(run_dir: Path, state: TrainStateRecord) -> None:
    with atomic_open(run_dir / STATE_FILE) as f:
        torch.save(state.model_dump(by_alias=True), f)


def read_train_state(run_dir: Path) -> TrainStateRecord | None:
    """The training state, loaded without running code (weights_only) and checked; None before epoch 1 ends."""
    path = run_dir / STATE_FILE
    if not path.is_file():
        return None
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for damaged or unsafe files
        raise RunError(f"{path}: not a loadable training state ({type(e).__name__})") from None
    return parse(TrainStateRecord, saved, str(path))
