"""The training loop: data resident on the device, index-slice batches, one run directory.

`train()` reads like pytorch/examples' main: set up, then for each epoch `train_epoch()` and
`evaluate_epoch()` (an epoch's figures on the validation or test split, cheaper than the final
figures), save, report. What a run carries from epoch to epoch is state.py's `TrainState`; what a
recipe builds is build.py's; how a step runs is engine.py's; what goes on disk is lenet/runs/'s and
records.py's.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from lenet.core.cpushare import registered
from lenet.core.device import resolve_device
from lenet.core.errors import Interrupted, LenetError, RunError
from lenet.core.progress import bar, stage
from lenet.data.batches import batch_indices, holdout, to_float
from lenet.data.dataset import Dataset
from lenet.data.load import load_dataset
from lenet.data.registry import is_user_data
from lenet.models.views import Classifier
from lenet.runs import directory as runs
from lenet.runs.compat import read_config
from lenet.runs.metrics import EpochMetrics
from lenet.runs.state import STATE_FILE
from lenet.training.augment import augment, erase
from lenet.training.build import build_model, check_schedule, steps_per_epoch as epoch_steps
from lenet.training.config import RunResult, TrainConfig
from lenet.training.engine import Step, prepare, resolve_precision, shared_threads, training_order
from lenet.training.metrics import Evaluation, evaluate
from lenet.training.objective import Objective
from lenet.training.recipes import Recipe
from lenet.training.records import (epochs_without_progress, is_stuck, keep_samples, new_run_dir, resume_run_dir,
                                    summary_record)  # fmt: skip
from lenet.training.start import check_start, read_parent, take_weights
from lenet.training.resume import resumed_data
from lenet.training.state import TrainState, start_state
from lenet.training.teacher import check_teacher_unchanged, load_teacher, teacher_forward, teacher_identity

STUCK_ADVICE = (
    "accuracy after epoch 1 is {accuracy:.1%}, chance level: the sigmoid units have saturated "
    "(the tutorial's Adam at lr 0.01 on [0, 1] inputs does this on 2 of seeds 0-9) and "
    "the run will most likely stay there; use --recipe default, or --lr 0.001, or --model lenet_relu"
)
# A model without sigmoids cannot saturate so: what it sees may not tell the classes apart.
CHANCE_ADVICE = (
    "accuracy after epoch 1 is {accuracy:.1%}, chance level: check that the classes differ in what the model "
    "sees (lenet preview DATASET: colour thrown away, say, with --channels 1), or train longer"
)
# With the whole training set in one batch, an epoch is a single step: chance after it is no sign of saturation.
ONE_STEP_ADVICE = (
    "accuracy after epoch 1 is {accuracy:.1%}, chance level, after a single step: the batch holds all "
    "{images} training images, so an epoch is one update; use a smaller --batch-size or more --epochs"
)


class TrainingDiverged(LenetError):
    """The loss became NaN or infinite."""


@dataclass(frozen=True)
class Splits:
    """The images a run trains on and the ones each epoch is evaluated on (validation, or test)."""

    train: tuple[torch.Tensor, torch.Tensor]
    evaluated: tuple[torch.Tensor, torch.Tensor]  # every epoch is evaluated on these (--eval-every)
    eval_split: str  # "val" or "test"

    @classmethod
    def of(cls, data: Dataset, val_split: int, val_seed: int = 0) -> Splits:
        if val_split:
            train, val = holdout(data.train_images, data.train_labels, val_split, val_seed)
            return cls(train, val, "val")
        return cls((data.train_images, data.train_labels), (data.test_images, data.test_labels), "test")


# --- the loop ---------------------------------------------------------------------------


def train(
    config: TrainConfig = TrainConfig(),
    data: Dataset | None = None,
    on_epoch: Callable[[EpochMetrics], None] | None = None,
    on_warning: Callable[[str], None] | None = None,
    resume: str | Path | None = None,
) -> RunResult:
    """Train one model by `config`; evaluate it after every epoch on the validation or test set.

    With `resume` (a run directory made with the same config, see `resume_config`), the
    run continues after its last completed epoch and ends as an uninterrupted run would.
    While it trains, the process is in the registry of busy lenet processes (core/cpushare.py),
    so that a training started beside it takes its share of the cores.
    """
    threads = torch.get_num_threads()
    try:
        with registered():
            return _train(config, data, on_epoch, on_warning, resume)
    finally:  # a run's thread count (--threads, or its share of a busy machine) is its own, not the next one's
        torch.set_num_threads(threads)


def _train(config: TrainConfig, data: Dataset | None, on_epoch: Callable[[EpochMetrics], None] | None,
           on_warning: Callable[[str], None] | None, resume: str | Path | None) -> RunResult:  # fmt: skip
    device = resolve_device(config.device)
    # "auto" becomes what this device runs, so config.json (and a resume) says which precision trained.
    config = replace(config, recipe=replace(config.recipe, precision=resolve_precision(config.recipe.precision, device)))
    recipe = config.recipe
    set_determinism(device, config.deterministic)
    if resume is not None:  # the data the run began on, or none: checked here, so every caller gets the check
        data = resumed_data(resume, data, config.data_dir)
    data = (data or load_dataset(config.dataset, config.data_dir, skip_bad=config.skip_bad, channels=config.channels,
                                 size=config.size)).to(device)
    splits = Splits.of(data, config.val_split, recipe.val_seed)
    shared = None
    if resume is None:  # a resume keeps the thread count its run recorded
        engine, shared = shared_threads(config.engine, device)
        config = replace(config, engine=engine)
    steps_per_epoch = epoch_steps(len(splits.train[1]), recipe.batch_size)

    teacher, identity = None, None
    # The teacher is loaded (and, on a resume, checked) before the seed is set: building its network draws
    # from the global generator, and the student's weights must not depend on whether a teacher is there.
    if recipe.teacher:
        teacher, identity = load_teacher(recipe.teacher, data.spec, device)
        if resume is not None:
            check_teacher_unchanged(resume, read_config(Path(resume)).teacher, recipe.teacher)

    check_patience(config)
    parent = read_parent(config.start_from) if config.start_from and resume is None else None
    if parent is not None:
        check_start(parent, recipe, data.spec)
    torch.manual_seed(config.seed)
    model = build_model(recipe, data.spec, splits.train[0]).to(device)
    if parent is not None:  # a new last layer keeps its fresh draw where the classes differ
        take_weights(model, parent)
    prepare(model.net, config.engine)
    state = start_state(config, model.net, len(splits.train[1]), steps_per_epoch, device)
    if shared is not None:
        _warn(state, shared, on_warning)
    # The engine's fall-backs (no compiler, no graph capture) are the run's warnings too: summary.json keeps them.
    step = Step(model.net, state.optimizer, state.schedule, config.engine, precision=recipe.precision,
                on_warning=lambda text: _warn(state, text, on_warning),
                objective=objective(recipe, config, teacher))  # fmt: skip
    # What is judged, evaluated and saved: the network, or its moving average when the recipe keeps one.
    model = model if state.ema is None else Classifier(state.ema.net, model.views, model.data)
    run_dir = (resume_run_dir(Path(resume), state, model) if resume is not None
               else new_run_dir(config, data, device, identity, parent.record if parent else None))  # fmt: skip

    epoch, stopped_early = state.epoch + 1, None
    try:
        for epoch in range(state.epoch + 1, recipe.epochs + 1):
            if config.patience and epochs_without_progress(state.history) >= config.patience:
                stopped_early = state.epoch  # a resumed run that had stopped stops again, before training
                break
            lr = state.optimizer.param_groups[0]["lr"]
            loss, accuracy, seconds = train_epoch(step, state, splits.train, config, epoch, steps_per_epoch)
            figures, eval_seconds = None, 0.0
            if is_evaluated(epoch, recipe.epochs, config.eval_every):
                figures, eval_seconds = evaluate_epoch(model, splits.evaluated, recipe,
                                                       _bar(config, f"epoch {epoch}/{recipe.epochs} evaluating"))
            row = EpochMetrics(
                epoch=epoch, train_loss=loss, train_accuracy=accuracy, eval_split=splits.eval_split,
                eval_loss=figures.loss if figures else None, eval_accuracy=figures.accuracy if figures else None,
                seconds=seconds,
                images_per_s=len(splits.train[1]) / seconds, eval_seconds=eval_seconds, lr=lr,
            )  # fmt: skip
            state.history.append(row)
            state.epoch, state.train_seconds = epoch, state.train_seconds + row.seconds
            # Not evaluated, the first epoch's training accuracy tells a stuck run as well.
            first = row.eval_accuracy if row.eval_accuracy is not None else row.train_accuracy
            if epoch == 1 and is_stuck(first, model.net.config.num_classes):
                sigmoid = model.net.config.activation == "sigmoid"
                advice = ONE_STEP_ADVICE if steps_per_epoch == 1 else STUCK_ADVICE if sigmoid else CHANCE_ADVICE
                _warn(state, advice.format(accuracy=first, images=len(splits.train[1])), on_warning)
            if run_dir is not None:
                runs.save_epoch(run_dir, state.to_record(), state.history, model)
                keep_samples(run_dir, data)
            if on_epoch is not None:
                on_epoch(row)
            if config.patience and epoch < recipe.epochs and epochs_without_progress(state.history) >= config.patience:
                stopped_early = epoch
                break
        with stage(f"final figures: {model.views.describe()}", config.progress):
            test, val = final_figures(model, data, splits, recipe, _bar(config, "final figures"))
        if run_dir is not None:
            runs.write_summary(run_dir, summary_record(model, test, val, state, stopped_early))
    except TrainingDiverged as e:
        if run_dir is None:
            raise
        if state.epoch == 0:
            raise TrainingDiverged(f"{e}; {run_dir} holds only its config.json: remove it") from None
        raise TrainingDiverged(f"{e}; the weights of epoch {state.epoch} are in {run_dir}") from None
    except KeyboardInterrupt:  # Ctrl-C anywhere: in a step, an evaluation or between the atomic writes
        if run_dir is not None and runs.is_finished(run_dir):  # the disk is the truth
            raise Interrupted(epoch, finished_run=run_dir) from None
        resumable = run_dir is not None and (run_dir / STATE_FILE).exists()
        # A run on the user's own data resumes only with it named again (a run's files never choose a path).
        again = f"{run_dir} --dataset {config.dataset}" if is_user_data(config.dataset) else run_dir
        raise Interrupted(epoch, again if resumable else None) from None
    return RunResult(model.eval(), state.history, test, val, run_dir, state.train_seconds, state.warnings)


def check_before_training(config: TrainConfig, data: Dataset) -> None:
    """Refuse now, before anything is printed or trained, what train() would refuse later: a device
    this machine lacks, a teacher that is not there, a validation split that leaves no training image,
    a schedule the number of steps cannot make (training/build.check_schedule), a run name already taken."""
    resolve_device(config.device)
    check_patience(config)
    if config.recipe.teacher:
        teacher_identity(config.recipe.teacher)  # a missing or unreadable teacher
    if config.val_split:
        holdout(data.train_labels, data.train_labels, config.val_split)  # refuses a size that leaves nothing
    check_schedule(config.recipe, len(data.train_labels) - config.val_split)  # e.g. a one-step warm-up
    if config.save and config.name is not None:
        runs.check_run_name(config.name)
        if (Path(config.out) / config.name).exists():
            raise RunError(f"run directory {Path(config.out) / config.name} already exists; "
                                "choose another --name or remove it")


def check_patience(config: TrainConfig) -> None:
    """Early stopping judges on the validation split: on the test set, the test set would choose."""
    if config.patience and not config.val_split:
        raise LenetError(f"--patience {config.patience} stops on the validation split's accuracy; add --val-split N "
                         "(the test set chooses nothing)")  # fmt: skip


def is_evaluated(epoch: int, epochs: int, every: int) -> bool:
    """Whether an epoch's figures are computed: every `every`-th epoch (none if 0), and the last always."""
    return epoch == epochs or (every > 0 and epoch % every == 0)


def train_epoch(step: Step, state: TrainState, data: tuple[torch.Tensor, torch.Tensor], config: TrainConfig,
                epoch: int, steps: int) -> tuple[float, float, float]:  # fmt: skip
    """One pass over the training images: (mean loss, accuracy, seconds)."""
    recipe, (images, labels) = config.recipe, data
    batches = batch_indices(len(labels), recipe.batch_size, shuffle=True, generator=state.shuffle, device=images.device)
    # Sums stay on the device so the step never waits for the host.
    loss_sum = torch.zeros((), device=images.device)
    correct = torch.zeros((), dtype=torch.long, device=images.device)
    start = time.perf_counter()
    state.net.train()
    with training_order(state.net, config.engine):
        for idx in bar(batches, steps, f"epoch {epoch}/{recipe.epochs}", config.progress):
            x, y = images[idx], labels[idx]
            if recipe.shift or recipe.flip:
                x = augment(x, recipe.shift, recipe.flip, state.augment_rng, alternated(state, idx, epoch))
            if recipe.erase:
                x = erase(x, recipe.erase, recipe.erase_area, recipe.erase_ratio, recipe.erase_fill, state.augment_rng)
            loss, logits = step(to_float(x), y)
            if state.ema is not None:
                state.ema.update(state.net)
            loss_sum += loss * len(idx)
            correct += (logits.argmax(dim=1) == y).sum()
    seconds = time.perf_counter() - start
    total = loss_sum.item()
    if not math.isfinite(total):
        raise TrainingDiverged(f"the training loss became {total} in epoch {epoch}; try a lower --lr")
    return total / len(labels), int(correct.item()) / len(labels), seconds


def objective(recipe: Recipe, config: TrainConfig, teacher=None) -> Objective:
    """The recipe's training loss; with a teacher, blended with its soft targets (objective.py)."""
    if teacher is None:
        return Objective(recipe.label_smoothing)
    return Objective(recipe.label_smoothing, teacher_forward(teacher, config.engine, recipe.precision),
                     recipe.distill_weight, recipe.distill_temperature)  # fmt: skip


def alternated(state: TrainState, idx: torch.Tensor, epoch: int) -> torch.Tensor | None:
    """Which of the batch's images alternating flips mirror in this epoch: the fixed half in odd
    epochs, the others in even ones (None: no alternating flips, a fresh coin per image)."""
    return None if state.flip_half is None else state.flip_half[idx] ^ (epoch % 2 == 0)


def evaluate_epoch(model: Classifier, data: tuple[torch.Tensor, torch.Tensor], recipe: Recipe,
          progress: str | None = None) -> tuple[Evaluation, float]:  # fmt: skip
    """An epoch's figures on the evaluated split, and their seconds: the image and its mirror only, a
    fifth of the cost of every view (the final figures use them all)."""
    start = time.perf_counter()
    figures = evaluate(Classifier(model.net, replace(model.views, shift=0), model.data), *data, recipe.eval_batch_size,
                      progress)  # fmt: skip
    return figures, time.perf_counter() - start


def final_figures(model: Classifier, data: Dataset, splits: Splits, recipe: Recipe,
                  progress: str | None = None) -> tuple[Evaluation, Evaluation | None]:  # fmt: skip
    """Test (and validation) figures of the model exactly as saved and as `lenet eval` loads it
    (the default layout, float32, every view), so the two always agree to the image."""
    model.net.to(memory_format=torch.contiguous_format)
    test = evaluate(model, data.test_images, data.test_labels, recipe.eval_batch_size, progress)
    val = evaluate(model, *splits.evaluated, recipe.eval_batch_size, progress) if splits.eval_split == "val" else None
    return test, val


def _warn(state: TrainState, text: str, on_warning: Callable[[str], None] | None) -> None:
    state.warnings.append(text)
    if on_warning is not None:
        on_warning(text)


def _bar(config: TrainConfig, description: str) -> str | None:
    """An evaluation's bar description, when the run shows progress."""
    return description if config.progress else None


def set_determinism(device: torch.device, deterministic: bool) -> None:
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = not deterministic
        torch.use_deterministic_algorithms(deterministic, warn_only=False)
        if deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


