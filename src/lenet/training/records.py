"""What a run writes about itself (config.json, summary.json, its state after each epoch).

lenet/runs/ knows the files and their schemas; this module knows what a TrainConfig and a finished run
put in them. What a resume takes back out is resume.py's.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch

from lenet.core.device import describe
from lenet.data.dataset import Dataset
from lenet.models.lenet import count_parameters
from lenet.models.views import Classifier
from lenet.runs import directory as runs
from lenet.runs.config import StartRecord
from lenet.runs.metrics import EpochMetrics
from lenet.runs.samples import SAMPLES_FILE, write_samples
from lenet.runs.state import read_train_state
from lenet.training.build import recipe_model_config, recipe_views
from lenet.training.config import TrainConfig
from lenet.training.metrics import Evaluation
from lenet.training.state import TrainState
from lenet.training.teacher import TeacherIdentity

CHANCE_MARGIN = 0.05  # accuracy within this of 1/classes after epoch 1 means a stuck run
MAX_SKIPPED_RECORDED = 1000  # files left out by --skip-bad that config.json names; it counts them all


def is_stuck(accuracy: float, num_classes: int) -> bool:
    return accuracy < 1 / num_classes + CHANCE_MARGIN


def new_run_dir(config: TrainConfig, data: Dataset, device: torch.device,
                teacher: TeacherIdentity | None = None, parent: StartRecord | None = None) -> Path | None:  # fmt: skip
    """The run's directory, claimed and holding its config.json (None when the run is not saved)."""
    if not config.save:
        return None
    if config.name is not None:
        run_dir = runs.create_run_dir(config.out, config.name)
    else:
        run_dir = runs.create_unique_run_dir(config.out, runs.default_run_name(config.recipe_name, f"seed{config.seed}"))
    runs.write_config(run_dir, config_record(config, data, device, teacher, parent))
    return run_dir


def keep_samples(run_dir: Path, data: Dataset) -> None:
    """A few test images a class, with the run's first saved epoch (a run that never finished one holds only its
    config.json): the run is then deployable without its data set."""
    if not (run_dir / SAMPLES_FILE).is_file():
        write_samples(run_dir, data.test_images, data.test_labels)


def resume_run_dir(run_dir: Path, state: TrainState, model: Classifier) -> Path:
    """Restore `state` from the run's train_state.pt (if its first epoch ended) and make its records agree."""
    saved = read_train_state(run_dir)
    if saved is not None:  # else the run ended before its first epoch did: start it over
        state.restore(saved)
        # A kill may have come between the state and the other writes of its epoch.
        runs.save_epoch(run_dir, state.to_record(), state.history, model)
    return run_dir


def config_record(config: TrainConfig, data: Dataset, device: torch.device,
                  teacher: TeacherIdentity | None = None, parent: StartRecord | None = None) -> dict:  # fmt: skip
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
        **({"start_from": parent.model_dump()} if parent is not None else {}),
        "patience": config.patience,
    }


def summary_record(model: Classifier, test: Evaluation, val: Evaluation | None, state: TrainState,
                   stopped_early: int | None = None) -> dict:  # fmt: skip
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
        "stopped_early": stopped_early,
        "best_epoch": best_epoch(history),
    }


def best_epoch(history: list[EpochMetrics]) -> int | None:
    """The judged epoch of the best validation accuracy (the first of equals); None without a validation split."""
    judged = [row for row in history if row.eval_split == "val" and row.eval_accuracy is not None]
    return max(judged, key=lambda row: (row.eval_accuracy, -row.epoch)).epoch if judged else None


def epochs_without_progress(history: list[EpochMetrics]) -> int:
    """Judged epochs since the best validation accuracy: early stopping's count."""
    best = best_epoch(history)
    return 0 if best is None else sum(1 for row in history if row.epoch > best and row.eval_accuracy is not None)
