"""A sweep's own records: plan.json (every configuration, resolved), trials.json (how each Tune trial
ended), sessions.json (each session's Tune experiment) and a failed run's failed.json. `lenet sweep
--resume` reads only these and the run directories, never Ray Tune's pickles."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from lenet.core.errors import RunError
from lenet.data.registry import MAX_IMAGE_SIZE, MIN_IMAGE_SIZE
from lenet.runs.compat import upgrade_sessions, upgrade_trials
from lenet.runs.config import HEX64
from lenet.runs.record import Record, Versioned, read_record, write_record

PLAN_FILE, TRIALS_FILE, SESSIONS_FILE, FAILED_FILE = "plan.json", "trials.json", "sessions.json", "failed.json"
ENDINGS = ("finished", "stopped early", "error")  # how a Tune trial ends; an errored one is tried again on --resume
MAX_TRIALS = 100_000
BIG = 2**31


class AxisRecord(Record):
    """One varied recipe field."""

    FILE = "plan.json: space.axes[]"
    ZH = {"field": "变化的配方字段", "kind": "grid、choice、uniform 或 loguniform", "values": "取值，或区间的两端"}

    field: str = Field(min_length=1, description="the recipe field varied")
    kind: Literal["grid", "choice", "uniform", "loguniform"] = Field(description="grid, choice, uniform or loguniform")
    values: list[Any] = Field(min_length=1, description="the values, or (low, high) of a range")


class AshaRecord(Record):
    FILE = "plan.json: space.asha"
    ZH = {"grace_period": "每个试验至少训练的轮数", "reduction_factor": "每一级约有几分之一的试验继续"}

    grace_period: int = Field(1, ge=1, le=BIG, description="epochs every trial gets before it may be stopped")
    reduction_factor: int = Field(3, ge=2, le=BIG, description="about 1 in this many trials goes on at each rung")


class SpaceRecord(Record):
    """The SPACE file as checked, with the command line's settings applied."""

    FILE = "plan.json: space"
    ZH = {"base": "起点配方的全部字段", "base_name": "起点配方的名字或文件", "axes": "变化的字段",
          "trials": "配置数（null：整个网格）", "seeds": "每个配置训练的种子数", "first_seed": "第一个种子",
          "seeds_per_trial": "一个 Tune 试验中依次训练的种子数", "val_split": "验证集的图像数",
          "metric": "排名所用的指标：final 或 best", "sample_seed": "抽样的种子", "max_failures": "试验进程丢失时的重试次数",
          "asha": "ASHA 提前停止的设置（无则为 null）", "train_subset": "只用前多少张训练图像（null：全部）",
          "test_subset": "只用前多少张测试图像（null：全部）", "name": "扫描的名字", "dataset": "数据集（null：Fashion-MNIST）",
          "search": "random 或 optuna", "max_concurrent": "同时运行的试验数上限",
          "skip_bad": "folder: 数据集中无法读取的文件是否被略去（而不是拒绝整个数据集）",
          "channels": "folder: 数据集读作灰度（1）还是彩色（3）（null：由文件夹推断）",
          "size": "folder: 数据集图像的边长（null：由文件夹推断）"}

    base: dict[str, Any] = Field(description="the base recipe's every field")
    base_name: str = Field("default", description="the base recipe's name or file")
    axes: list[AxisRecord] = Field([], description="the varied fields")
    trials: int | None = Field(None, ge=1, le=MAX_TRIALS, description="configurations (null: the whole grid)")
    seeds: int = Field(1, ge=1, le=MAX_TRIALS, description="seeds each configuration trains")
    first_seed: int = Field(0, ge=0, le=2**62, description="the first seed")
    seeds_per_trial: int = Field(1, ge=1, le=MAX_TRIALS, description="seeds a Tune trial trains one after another")
    val_split: int = Field(ge=1, le=BIG, description="validation images")
    metric: Literal["final", "best"] = Field("final", description="what ranks: final or best")
    sample_seed: int = Field(0, ge=0, le=2**62, description="seeds the draws")
    max_failures: int = Field(3, ge=0, le=BIG, description="retries of a trial whose process or node died")
    asha: AshaRecord | None = Field(None, description="ASHA's settings (null: no early stopping)")
    train_subset: int | None = Field(None, ge=1, le=BIG, description="the first N training images only")
    test_subset: int | None = Field(None, ge=1, le=BIG, description="the first N test images only")
    name: str | None = Field(None, description="the sweep's name")
    dataset: str | None = Field(None, min_length=1, description="the data set (null: Fashion-MNIST)")
    search: Literal["random", "optuna"] = Field("random", description="random or optuna")
    max_concurrent: int | None = Field(None, ge=1, le=BIG, description="trials at a time at most")
    skip_bad: bool = Field(False, description="a folder's unreadable files left out (not the whole data set refused)")
    channels: Literal[1, 3] | None = Field(None, description="a folder read in grey (1) or colour (3) (null: inferred)")
    size: int | None = Field(None, ge=MIN_IMAGE_SIZE, le=MAX_IMAGE_SIZE, description="a folder's image side (null: inferred)")


class PlanRecord(Versioned):
    """plan.json: everything a sweep needs to run or resume."""

    FILE = PLAN_FILE
    ZH = {"format_version": "文件格式的版本", "directory": "扫描目录（读取时以 plan.json 所在处为准）",
          "space": "SPACE 文件检查后的内容", "configurations": "每个配置中变化字段的取值（optuna 尚未提出的为 null）",
          "cpus_per_trial": "每个试验的 CPU 数", "gpus_per_trial": "每个试验的 GPU 数",
          "data_sha256": "用户数据的摘要：--resume 时 --dataset 给出的数据必须与之相同"}

    directory: str = Field(description="the sweep directory (on reading, where plan.json is)")
    space: SpaceRecord = Field(description="the SPACE file, checked")
    configurations: list[dict[str, Any] | None] = Field(max_length=MAX_TRIALS, description=(
        "each configuration's varied values (null: not yet proposed by optuna)"))
    cpus_per_trial: float = Field(1.0, gt=0, le=4096, description="CPUs per trial")
    gpus_per_trial: float = Field(0.0, ge=0, le=4096, description="GPUs per trial")
    data_sha256: str = Field("", pattern=f"({HEX64}|^$)", description=(
        "a user's data set's digest: --resume takes the data from --dataset and refuses other data"))


class TrialsRecord(Versioned):
    """trials.json: how each Tune trial that ended did so."""

    FILE = TRIALS_FILE
    ZH = {"format_version": "文件格式的版本", "trials": "试验编号到结局：finished、stopped early 或 error"}

    trials: dict[str, Literal["finished", "stopped early", "error"]] = Field({}, description=(
        "trial number to how it ended: finished, stopped early or error"))


class SessionRecord(Record):
    FILE = "sessions.json: sessions[]"
    ZH = {"experiment": "该次的 Tune 实验名", "storage": "Tune 保存实验之处"}

    experiment: str = Field(min_length=1, description="the session's Tune experiment")
    storage: str = Field(description="where Tune kept it")


class SessionsRecord(Versioned):
    """sessions.json: one entry per session (the first run and each resume)."""

    FILE = SESSIONS_FILE
    ZH = {"format_version": "文件格式的版本", "sessions": "每一次（首次运行与每次续跑）的记录"}

    sessions: list[SessionRecord] = Field([], description="one per session, the first run's first")


class FailedRecord(Versioned):
    """failed.json: in a run directory whose training failed for its own reasons (diverged, bad values)."""

    FILE = FAILED_FILE
    ZH = {"format_version": "文件格式的版本", "error": "失败的原因，一行", "type": "错误的类型"}

    error: str = Field(description="why, in one line")
    type: str = Field("LenetError", description="the error's type")


def read_plan_record(directory: Path) -> PlanRecord:
    path = directory / PLAN_FILE
    if not path.is_file():
        raise RunError(f"{directory}: not a sweep directory (no {PLAN_FILE})")
    return read_record(path, PlanRecord)


def write_plan_record(directory: Path, plan: PlanRecord) -> None:
    write_record(directory / PLAN_FILE, plan)


def read_trials(directory: Path) -> dict[int, str]:
    """Trial number to how it ended; {} for a sweep of before trials.json."""
    path = directory / TRIALS_FILE
    if not path.exists():
        return {}
    record = read_record(path, TrialsRecord, upgrade_trials)
    try:
        return {int(k): v for k, v in record.trials.items()}
    except ValueError:
        raise RunError(f"{path}: field trials: keys are trial numbers") from None


def write_trials(directory: Path, trials: dict[int, str]) -> None:
    write_record(directory / TRIALS_FILE, TrialsRecord(trials={str(k): v for k, v in sorted(trials.items())}))


def read_sessions(directory: Path) -> list[SessionRecord]:
    path = directory / SESSIONS_FILE
    return read_record(path, SessionsRecord, upgrade_sessions).sessions if path.exists() else []


def write_sessions(directory: Path, sessions: list[SessionRecord]) -> None:
    write_record(directory / SESSIONS_FILE, SessionsRecord(sessions=sessions))


def read_failed(run_dir: Path) -> FailedRecord:
    return read_record(run_dir / FAILED_FILE, FailedRecord)


def write_failed(run_dir: Path, error: Exception) -> None:
    write_record(run_dir / FAILED_FILE, FailedRecord(error=str(error), type=type(error).__name__))
