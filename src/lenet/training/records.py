"""What a run writes about itself (config.json, summary.json) and how a resume reads it back.

runs.py knows the files; this module knows what a TrainConfig and a finished run put in them.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path

import torch

from lenet.core.device import describe, resolve_device
from lenet.core.errors import CheckpointError, LenetError
from lenet.data.dataset import Dataset
from lenet.data.registry import DataSpec
from lenet.models.lenet import count_parameters
from lenet.models.views import Classifier
from lenet.training import compat, runs
from lenet.training.build import recipe_model_config, recipe_views
from lenet.training.config import TrainConfig
from lenet.training.engine import Engine
from lenet.training.metrics import Evaluation
from lenet.training.recipes import Recipe
from lenet.training.state import TrainState
from lenet.training.teacher import TeacherIdentity, check_teacher_unchanged

CHANCE_MARGIN = 0.05  # accuracy within this of 1/classes after epoch 1 means a stuck run
MAX_SKIPPED_RECORDED = 1000  # files left out by --skip-bad that config.json names; it counts them all


def is_stuck(accuracy: float, num_classes: int) -> bool:
    return accuracy < 1 / num_classes + CHANCE_MARGIN


def new_run_dir(config: TrainConfig, data: Dataset, device: torch.device,
                teacher: TeacherIdentity | None = None) -> Path | None:  # fmt: skip
    """The run's directory, claimed and holding its config.json (None when the run is not saved)."""
    if not config.save:
        return None
    if config.name is not None:
        run_dir = runs.create_run_dir(config.out, config.name)
    else:
        run_dir = runs.create_unique_run_dir(config.out, runs.default_run_name(config.recipe_name, f"seed{config.seed}"))
    runs.write_config(run_dir, config_record(config, data, device, teacher))
    return run_dir


def resume_run_dir(run_dir: Path, state: TrainState, model: Classifier) -> Path:
    """Restore `state` from the run's train_state.pt (if its first epoch ended) and make its records agree."""
    saved = runs.read_train_state(run_dir)
    if saved is not None:  # else the run ended before its first epoch did: start it over
        state.restore(saved)
        # A kill may have come between the state and the other writes of its epoch.
        runs.save_epoch(run_dir, state.to_dict(), state.history, model)
    return run_dir


def config_record(config: TrainConfig, data: Dataset, device: torch.device,
                  teacher: TeacherIdentity | None = None) -> dict:  # fmt: skip
    return {
        "recipe_name": config.recipe_name,
        "recipe": config.recipe.to_dict(),
        "model_config": recipe_model_config(config.recipe, data.spec).to_dict(),
        "views": recipe_views(config.recipe).to_dict(),
        "seed": config.seed,
        "val_split": config.val_split,
        "eval_split": "val" if config.val_split else "test",
        "device": str(device),
        "device_name": describe(device),
        "deterministic": config.deterministic,
        "eval_every": config.eval_every,
        "report": config.report,
        "engine": asdict(config.engine),
        "data": {"name": data.spec.name, "source": data.source, "sha256": data.sha256, "spec": data.spec.to_dict(),
                 **({"skipped": list(data.skipped[:MAX_SKIPPED_RECORDED]), "skipped_count": len(data.skipped)}
                    if data.skipped else {}),
                 "skip_bad": config.skip_bad},
        # A distilling run's teacher, by its weights' digest: a resume refuses another teacher.
        **({"teacher": teacher.to_dict()} if teacher is not None else {}),
    }


def summary_record(model: Classifier, test: Evaluation, val: Evaluation | None, state: TrainState) -> dict:
    history = state.history
    return {
        "model": model.net.config.to_dict(),
        "views": model.views.to_dict(),
        "parameters": count_parameters(model),
        "epochs": len(history),
        "train_seconds": state.train_seconds,
        "final_train_loss": history[-1].train_loss,
        "final_train_accuracy": history[-1].train_accuracy,
        "per_epoch_split": history[-1].eval_split,
        "val": {"loss": val.loss, "accuracy": val.accuracy} if val is not None else None,
        "test": test.to_dict(),
        "stuck": is_stuck(test.accuracy, model.net.config.num_classes),
        "warnings": state.warnings,
    }


def is_finished(run_dir: str | Path) -> bool:
    """Whether a run wrote its summary, the last thing a run writes."""
    return (Path(run_dir) / runs.SUMMARY_FILE).is_file()


def resume_config(run_dir: str | Path, **overrides) -> TrainConfig:
    """The TrainConfig a run was started with, read back from its config.json.

    A `device` override may name another device of the same kind (cuda:1 for cuda:0), not another
    kind: the kernels and the generators differ between kinds, so the run would not go on as it began.
    """
    saved = runs.read_config(Path(run_dir))
    where = f"{run_dir}/{runs.CONFIG_FILE}"
    try:
        recipe, engine = compat.recipe_and_engine(saved)
        config = TrainConfig(
            recipe=Recipe.from_dict(recipe, where), recipe_name=saved["recipe_name"],
            seed=saved["seed"], dataset=compat.saved_dataset(saved), val_split=saved["val_split"],
            device=saved["device"], deterministic=saved["deterministic"], eval_every=compat.saved_eval_every(saved),
            out=str(Path(run_dir).parent), name=Path(run_dir).name, engine=Engine(**engine),
            report=compat.saved_report(saved), skip_bad=compat.saved_skip_bad(saved),
        )  # fmt: skip
    except (KeyError, TypeError, AttributeError) as e:
        raise CheckpointError(f"{run_dir}: config.json lacks what a resume needs ({e})") from None
    if overrides.get("device") is not None:
        check_same_device_kind(run_dir, saved["device"], overrides["device"])
    if config.recipe.teacher:  # refused here, before a resume says anything (train() checks again)
        check_teacher_unchanged(run_dir, saved.get("teacher"), config.recipe.teacher)
    return replace(config, **overrides)


def recorded_data(run_dir: str | Path) -> DataSpec:
    """What a run's config.json says of its data: name, classes and digest."""
    try:
        return compat.saved_data_spec(runs.read_config(Path(run_dir)))
    except (LenetError, AttributeError, TypeError) as e:
        raise CheckpointError(f"{run_dir}: config.json's data record is damaged ({e})") from None


def check_same_device_kind(run_dir: str | Path, saved: str, asked: str) -> None:
    kind, asked_kind = torch.device(saved).type, resolve_device(asked).type
    if kind != asked_kind:
        raise LenetError(f"{run_dir} trained on {kind}; --resume --device {asked} would go on on {asked_kind}, with "
                         f"other kernels and generators, so not as it began: resume on {kind}, or start a new run")
