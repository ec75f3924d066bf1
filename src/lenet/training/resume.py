"""Going on with a run: its config read back from config.json, its data and teacher named again by the
caller and checked against what the run recorded, and the finished-run check. The command line, the
notebook and a script get the same checks: `train(resume=...)` makes them too."""

from __future__ import annotations

import typing
from dataclasses import dataclass, fields, replace
from pathlib import Path

import torch

from lenet.core.device import resolve_device
from lenet.core.errors import CheckpointError, DataError, LenetError, short_repr
from lenet.core.values import check_value
from lenet.data.dataset import Dataset
from lenet.data.load import load_model_data
from lenet.data.registry import DataSpec, shown_name
from lenet.runs.compat import read_config, saved_data_spec
from lenet.runs.config import CONFIG_FILE, ConfigRecord
from lenet.runs.directory import is_finished, read_summary
from lenet.runs.state import STATE_FILE
from lenet.runs.summary import SummaryRecord
from lenet.training.config import TrainConfig
from lenet.training.engine import Engine
from lenet.training.recipes import Recipe
from lenet.training.teacher import check_teacher_unchanged


@dataclass(frozen=True)
class Resume:
    """A resume, checked before anything trains: the run's config, and its data, or its summary if finished."""

    run_dir: Path
    config: TrainConfig
    data: Dataset | None  # None for a finished run
    finished: SummaryRecord | None  # the summary of a run that has nothing left to train
    report: bool  # whether the report is written after training: the run's own choice, unless the caller's


def prepare_resume(run_dir: str | Path, dataset: str | None = None, data_dir: str | None = None,
                   teacher: str | None = None, report: bool | None = None, **overrides) -> Resume:  # fmt: skip
    """Everything `lenet train --resume` checks before it trains, for any caller.

    Args:
        run_dir: the run to go on with.
        dataset: where its data is (a registry name, folder:PATH or csv:PATH); None: its own registry data set.
        data_dir: where a registry data set's files are.
        teacher: a distilling run's teacher, named again (its weights must be those the run began with).
        report: write the report after training; None: as the run chose when it began.
        overrides: TrainConfig fields that do not change what is trained (device of the same kind, progress).

    Example:
        >>> resume = prepare_resume("runs/x", dataset="folder:shapes")
        >>> if resume.finished is None:
        ...     train(resume.config, data=resume.data, resume=resume.run_dir)
    """
    run_dir = Path(run_dir)
    if is_finished(run_dir):  # nothing to train: neither teacher nor data is needed
        config = replace(saved_config(run_dir, read_config(run_dir)), data_dir=data_dir, **overrides)
        return Resume(run_dir, config, None, read_summary(run_dir), bool(report))
    config = resume_config(run_dir, teacher, data_dir=data_dir, **overrides)
    data = load_model_data(recorded_data(run_dir), dataset, data_dir, own=True)
    chosen = config.report if report is None else report
    return Resume(run_dir, config, resumed_data(run_dir, data, data_dir), None, chosen)


def resume_config(run_dir: str | Path, teacher: str | None = None, **overrides) -> TrainConfig:
    """The TrainConfig a run was started with, read back from its config.json, to go on with.

    A `device` override may name another device of the same kind (cuda:1 for cuda:0), not another
    kind: the kernels and the generators differ between kinds, so the run would not go on as it began.
    A distilling run's teacher is `teacher`, named again by the caller (a run's files never choose a
    path to read), and must be the one the run began with (its weights' SHA-256).
    """
    saved = read_config(Path(run_dir))
    config = saved_config(run_dir, saved)
    if saved.start_from is not None and not (Path(run_dir) / STATE_FILE).is_file():
        raise LenetError(f"{run_dir} started from {saved.start_from.path} and never finished its first epoch, so "
                         "it holds none of those weights: start it again with --start-from")  # fmt: skip
    if overrides.get("device") is not None:
        check_same_device_kind(run_dir, saved.device, overrides["device"])
    if config.recipe.teacher or saved.teacher is not None:  # refused here, before a resume says anything
        config = replace(config, recipe=replace(config.recipe, teacher=resumed_teacher(run_dir, saved, teacher)))
    elif teacher is not None:
        raise LenetError(f"{run_dir} was not distilled from a teacher; drop --teacher")
    return replace(config, **overrides)


def saved_config(run_dir: str | Path, saved: ConfigRecord) -> TrainConfig:
    """config.json as a TrainConfig, as it was written (a teacher's path in it is shown, never read)."""
    where = f"{run_dir}/{CONFIG_FILE}"
    return TrainConfig(
        recipe=Recipe.from_dict(saved.recipe, where), recipe_name=saved.recipe_name, seed=saved.seed,
        dataset=saved.data.name, val_split=saved.val_split, device=saved.device, deterministic=saved.deterministic,
        eval_every=saved.eval_every, out=str(Path(run_dir).parent), name=Path(run_dir).name,
        engine=engine_from_record(saved.engine, where), report=saved.report, skip_bad=saved.data.skip_bad,
        patience=saved.patience, **recorded_shape(saved),
    )  # fmt: skip


def recorded_shape(saved: ConfigRecord) -> dict[str, int]:
    """The channels and side a run on a folder read its images in, as recorded; {} for any other data."""
    if not saved.data.name.startswith("folder:"):
        return {}
    spec = saved_data_spec(saved.data)
    return {"channels": spec.channels, "size": spec.image_size}


def resumed_teacher(run_dir: str | Path, saved: ConfigRecord, teacher: str | None) -> str:
    """The teacher a distilling run goes on with: the one the caller names, if its weights are those the run
    began with. The path in config.json is never read."""
    digest = saved.teacher.sha256[:12] + "..." if saved.teacher is not None else "unknown"
    if teacher is None:
        raise LenetError(f"{run_dir} learns from a teacher (weights SHA-256 {digest}); lenet never reads a path "
                         "written in a run: name the teacher again with --teacher RUN")  # fmt: skip
    teacher = str(Path(teacher).resolve())
    check_teacher_unchanged(run_dir, saved.teacher, teacher)
    return teacher


def resumed_data(run_dir: str | Path, data: Dataset | None, data_dir: str | None = None) -> Dataset:
    """The data a resumed run goes on with: `data`, if it is what the run trained on (name, and digest where
    the run recorded one), or the run's registry data set read again; a user's own data must be given."""
    recorded = recorded_data(run_dir)
    if data is None:
        return load_model_data(recorded, None, data_dir, own=True)
    if recorded.sha256 != data.spec.sha256 or (not recorded.sha256 and recorded.name != data.spec.name):
        then = f"sha256 {recorded.sha256}" if recorded.sha256 else shown_name(recorded.name)
        now = f"sha256 {data.spec.sha256}" if data.spec.sha256 else shown_name(data.spec.name)
        raise DataError(f"{run_dir} trained on {then}, not on the data given ({now}): resume it on the data "
                        "it began with")  # fmt: skip
    return data


def engine_from_record(engine: dict, where: str) -> Engine:
    """config.json's engine settings, each checked as its flag is."""
    known = {f.name: f for f in fields(Engine)}
    hints = typing.get_type_hints(Engine)
    for name, value in engine.items():
        if name not in known:
            raise CheckpointError(f"{where}: field engine.{short_repr(name)}: not an engine setting of this lenet")
        kind = next((k for k in typing.get_args(hints[name]) if k is not type(None)), hints[name])
        if value is not None or type(None) not in typing.get_args(hints[name]):
            try:
                check_value(f"engine.{name}", value, kind, known[name].metadata)
            except LenetError as e:
                raise CheckpointError(f"{where}: field {e}") from None
    return Engine(**engine)


def recorded_data(run_dir: str | Path) -> DataSpec:
    """What a run's config.json says of its data: name, classes and digest."""
    try:
        return saved_data_spec(read_config(Path(run_dir)).data)
    except CheckpointError:
        raise
    except LenetError as e:
        raise CheckpointError(f"{run_dir}: config.json's data record is damaged ({e})") from None


def check_same_device_kind(run_dir: str | Path, saved: str, asked: str) -> None:
    kind, asked_kind = torch.device(saved).type, resolve_device(asked).type
    if kind != asked_kind:
        raise LenetError(f"{run_dir} trained on {kind}; --resume --device {asked} would go on on {asked_kind}, with "
                         f"other kernels and generators, so not as it began: resume on {kind}, or start a new run")
