"""The training loop: data resident on the device, index-slice batches, one run directory.

`train()` reads like pytorch/examples' main: set up, then for each epoch `train_epoch()` and
`judge()`, save, report. What a run carries from epoch to epoch is one `TrainState`; how a
step runs is engine.py's; what goes on disk is runs.py's.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from torch import nn

from lenet.training import runs
from lenet.data.dataset import Dataset
from lenet.data.batches import alternating_half, augment, batch_indices, holdout, to_float
from lenet.data.load import load_dataset
from lenet.data.registry import DEFAULT, DataSpec, data_digest, default_spec, is_user_data
from lenet.core.device import describe, resolve_device
from lenet.training.engine import Engine, Step, make_optimizer, prepare, resolve_precision, training_order
from lenet.core.errors import CheckpointError, Interrupted, LenetError
from lenet.training.metrics import Evaluation, evaluate, seed_statistics
from lenet.models.lenet import LeNet, LeNetConfig, count_parameters, model_config
from lenet.core.progress import bar, stage
from lenet.training.recipes import AUGMENT_SEED_OFFSET, FLIP_SEED_OFFSET, Recipe, get_recipe
from lenet.models.views import Classifier, Views

CHANCE_MARGIN = 0.05  # accuracy within this of 1/classes after epoch 1 means a stuck run
STUCK_ADVICE = (
    "accuracy after epoch 1 is {accuracy:.1%}, chance level: the sigmoid units have saturated "
    "(the tutorial's Adam at lr 0.01 on [0, 1] inputs does this on about a third of seeds) and "
    "the run will most likely stay there; use --recipe default, or --lr 0.001, or --model lenet_relu"
)


# With the whole training set in one batch, an epoch is a single step: chance after it is no sign of saturation.
ONE_STEP_ADVICE = (
    "accuracy after epoch 1 is {accuracy:.1%}, chance level, after a single step: the batch holds all "
    "{images} training images, so an epoch is one update; use a smaller --batch-size or more --epochs"
)


def is_stuck(accuracy: float, num_classes: int) -> bool:
    return accuracy < 1 / num_classes + CHANCE_MARGIN


class TrainingDiverged(LenetError):
    """The loss became NaN or infinite."""


@dataclass(frozen=True)
class TrainConfig:
    """What a run needs beyond its recipe: where, on what, and with which seed."""

    recipe: Recipe = field(default_factory=lambda: get_recipe("default"))
    recipe_name: str = "default"
    seed: int = 0
    dataset: str = DEFAULT  # a registry name (fashion-mnist, mnist, kmnist), folder:PATH or csv:PATH
    val_split: int = 0  # hold out this many training images; then every epoch is judged on them
    device: str = "auto"
    deterministic: bool = False  # CUDA: deterministic kernels (the CPU is deterministic anyway)
    data_dir: str | None = None
    out: str = "runs"
    name: str | None = None  # run directory name; a fresh one is made up when None
    save: bool = True  # write the run directory
    progress: bool = True  # a progress bar on a terminal
    eval_every: int = 1  # judge the val/test split after every N-th epoch and the last; 0: after the last only
    engine: Engine = field(default_factory=Engine)  # how the step runs; the maths stay the same
    skip_bad: bool = False  # folder:PATH: leave unreadable files out (listed in config.json) instead of refusing


@dataclass
class RunResult:
    model: Classifier  # the trained network with the recipe's test-time views, in eval mode
    history: list[runs.EpochMetrics]
    final: Evaluation  # on the test set, always, with every view
    val: Evaluation | None  # on the validation split (every view), if the run held one out
    run_dir: Path | None
    train_seconds: float
    warnings: list[str]


# --- what a recipe builds -------------------------------------------------------------


def recipe_model_config(recipe: Recipe, data: DataSpec | None = None) -> LeNetConfig:
    return model_config(recipe.model, data)


def recipe_views(recipe: Recipe) -> Views:
    return Views(flip=recipe.test_flip, shift=recipe.test_shift)


def build_model(recipe: Recipe, data: DataSpec | None = None) -> Classifier:
    """The recipe's network for a data set (its classes and, where it normalises, its statistics) and views."""
    return Classifier(LeNet(recipe_model_config(recipe, data)), recipe_views(recipe), data)


def build_optimizer(net: nn.Module, recipe: Recipe, engine: Engine = Engine()) -> torch.optim.Optimizer:
    params = parameter_groups(net, recipe)
    if recipe.optimizer == "sgd":
        return make_optimizer(torch.optim.SGD, params, engine, lr=recipe.lr, momentum=recipe.momentum,
                              nesterov=recipe.nesterov)  # fmt: skip
    factory = torch.optim.Adam if recipe.optimizer == "adam" else torch.optim.AdamW
    return make_optimizer(factory, params, engine, lr=recipe.lr, betas=recipe.betas, eps=recipe.eps)


def parameter_groups(net: nn.Module, recipe: Recipe) -> list[dict]:
    """One group decayed by the recipe's weight decay; biases and norm scales apart unless they decay too."""
    if recipe.decay_norm_and_bias:
        return [{"params": list(net.parameters()), "weight_decay": recipe.weight_decay}]
    weights = [p for p in net.parameters() if p.dim() > 1]
    flat = [p for p in net.parameters() if p.dim() <= 1]  # biases, batch-norm scales and shifts
    return [{"params": weights, "weight_decay": recipe.weight_decay}, {"params": flat, "weight_decay": 0.0}]


def build_schedule(optimizer: torch.optim.Optimizer, recipe: Recipe, total_steps: int):
    if recipe.schedule == "onecycle":
        if recipe.warmup * total_steps == 1:  # OneCycleLR divides by (warm-up steps - 1)
            raise LenetError(f"onecycle's warm-up is {recipe.warmup:.0%} of {total_steps} steps, exactly one step, "
                             "which PyTorch's OneCycleLR cannot do; train more steps or use --schedule constant")  # fmt: skip
        low, high = recipe.momentum_range
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=recipe.lr, total_steps=total_steps, pct_start=recipe.warmup,
            div_factor=recipe.onecycle_start_div, final_div_factor=recipe.onecycle_end_div,
            cycle_momentum=recipe.cycle_momentum, base_momentum=low, max_momentum=high,
        )  # fmt: skip
    if recipe.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps, eta_min=recipe.cosine_min_lr)
    return None


# --- the state a run carries ------------------------------------------------------------


@dataclass
class TrainState:
    """Everything a run needs to go on after its last completed epoch, bit for bit."""

    net: LeNet
    optimizer: torch.optim.Optimizer
    schedule: object | None
    shuffle: torch.Generator
    augment_rng: torch.Generator
    # The images mirrored in odd epochs under alternating flips (None: fresh coins); drawn from the
    # seed alone, so it is not saved: a resumed run draws it again.
    flip_half: torch.Tensor | None = None
    epoch: int = 0
    history: list[runs.EpochMetrics] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    train_seconds: float = 0.0

    def to_dict(self) -> dict:
        return {
            "epoch": self.epoch,
            "model": self.net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict() if self.schedule is not None else None,
            "rng": {"shuffle": self.shuffle.get_state(), "augment": self.augment_rng.get_state(),
                    "torch": torch.get_rng_state()},  # fmt: skip
            "history": [asdict(row) for row in self.history],
            "warnings": self.warnings,
            "train_seconds": self.train_seconds,
        }

    def restore(self, saved: dict) -> None:
        try:
            self.net.load_state_dict(saved["model"])
            self.optimizer.load_state_dict(saved["optimizer"])
            if self.schedule is not None:
                self.schedule.load_state_dict(saved["schedule"])
            self.shuffle.set_state(saved["rng"]["shuffle"])
            self.augment_rng.set_state(saved["rng"]["augment"].to(self.augment_rng.device))
            torch.set_rng_state(saved["rng"]["torch"])
            self.history = [runs.EpochMetrics(**row) for row in saved["history"]]
            self.epoch, self.warnings, self.train_seconds = saved["epoch"], saved["warnings"], saved["train_seconds"]
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise CheckpointError(f"the saved training state does not fit this run's config ({e})") from None


def start_state(config: TrainConfig, net: LeNet, train_size: int, steps_per_epoch: int,
                device: torch.device) -> TrainState:  # fmt: skip
    recipe = config.recipe
    optimizer = build_optimizer(net, recipe, config.engine)
    schedule = build_schedule(optimizer, recipe, recipe.epochs * steps_per_epoch)
    shuffle = torch.Generator().manual_seed(config.seed)
    augment_rng = torch.Generator(device=device).manual_seed(config.seed + AUGMENT_SEED_OFFSET)
    flip_half = None
    if recipe.flip and recipe.alternate_flips:
        flip_half = alternating_half(train_size, config.seed + FLIP_SEED_OFFSET, device)
    return TrainState(net, optimizer, schedule, shuffle, augment_rng, flip_half)


@dataclass(frozen=True)
class Splits:
    """The images a run trains on and the ones each epoch is judged on (validation, or test)."""

    train: tuple[torch.Tensor, torch.Tensor]
    judged: tuple[torch.Tensor, torch.Tensor]
    judged_name: str  # "val" or "test"

    @classmethod
    def of(cls, data: Dataset, val_split: int) -> Splits:
        if val_split:
            train, val = holdout(data.train_images, data.train_labels, val_split)
            return cls(train, val, "val")
        return cls((data.train_images, data.train_labels), (data.test_images, data.test_labels), "test")


# --- the loop ---------------------------------------------------------------------------


def train(
    config: TrainConfig = TrainConfig(),
    data: Dataset | None = None,
    on_epoch: Callable[[runs.EpochMetrics], None] | None = None,
    on_warning: Callable[[str], None] | None = None,
    resume: str | Path | None = None,
) -> RunResult:
    """Train one model by `config`; judge it after every epoch on the validation or test set.

    With `resume` (a run directory made with the same config, see `resume_config`), the
    run continues after its last completed epoch and ends as an uninterrupted run would.
    """
    device = resolve_device(config.device)
    # "auto" becomes what this device runs, so config.json (and a resume) says which precision trained.
    config = replace(config, recipe=replace(config.recipe, precision=resolve_precision(config.recipe.precision, device)))
    recipe = config.recipe
    set_determinism(device, config.deterministic)
    data = (data or load_dataset(config.dataset, config.data_dir, skip_bad=config.skip_bad)).to(device)
    splits = Splits.of(data, config.val_split)
    steps_per_epoch = -(-len(splits.train[1]) // recipe.batch_size)

    torch.manual_seed(config.seed)
    model = build_model(recipe, data.spec).to(device)
    prepare(model.net, config.engine)
    state = start_state(config, model.net, len(splits.train[1]), steps_per_epoch, device)
    # The engine's fall-backs (no compiler, no graph capture) are the run's warnings too: summary.json keeps them.
    step = Step(model.net, state.optimizer, state.schedule, config.engine, recipe.label_smoothing, recipe.precision,
                lambda text: _warn(state, text, on_warning))  # fmt: skip
    run_dir = _resume_run_dir(Path(resume), state, model) if resume is not None else _new_run_dir(config, data, device)

    epoch = state.epoch + 1
    try:
        for epoch in range(state.epoch + 1, recipe.epochs + 1):
            lr = state.optimizer.param_groups[0]["lr"]
            loss, accuracy, seconds = train_epoch(step, state, splits.train, config, epoch, steps_per_epoch)
            judged, eval_seconds = None, 0.0
            if is_judged(epoch, recipe.epochs, config.eval_every):
                judged, eval_seconds = judge(model, splits.judged, recipe, _bar(config, f"epoch {epoch}/{recipe.epochs} judging"))
            row = runs.EpochMetrics(
                epoch=epoch, train_loss=loss, train_accuracy=accuracy, eval_split=splits.judged_name,
                eval_loss=judged.loss if judged else None, eval_accuracy=judged.accuracy if judged else None,
                seconds=seconds,
                images_per_s=len(splits.train[1]) / seconds, eval_seconds=eval_seconds, lr=lr,
            )  # fmt: skip
            state.history.append(row)
            state.epoch, state.train_seconds = epoch, state.train_seconds + row.seconds
            # Unjudged, the first epoch's training accuracy tells a stuck run as well.
            first = row.eval_accuracy if row.eval_accuracy is not None else row.train_accuracy
            if epoch == 1 and is_stuck(first, model.net.config.num_classes):
                advice = STUCK_ADVICE if steps_per_epoch > 1 else ONE_STEP_ADVICE
                _warn(state, advice.format(accuracy=first, images=len(splits.train[1])), on_warning)
            if run_dir is not None:
                runs.save_epoch(run_dir, state.to_dict(), state.history, model)
            if on_epoch is not None:
                on_epoch(row)
        with stage(f"final figures: {model.views.describe()}", config.progress):
            test, val = final_figures(model, data, splits, recipe, _bar(config, "final figures"))
        if run_dir is not None:
            runs.write_summary(run_dir, _summary(model, test, val, state))
    except TrainingDiverged as e:
        if run_dir is None:
            raise
        if state.epoch == 0:
            raise TrainingDiverged(f"{e}; {run_dir} holds only its config.json: remove it") from None
        raise TrainingDiverged(f"{e}; the weights of epoch {state.epoch} are in {run_dir}") from None
    except KeyboardInterrupt:  # Ctrl-C anywhere: in a step, an evaluation or between the atomic writes
        resumable = run_dir is not None and (run_dir / runs.STATE_FILE).exists()  # the disk is the truth
        # A run on the user's own data resumes only with it named again (a run's files never choose a path).
        again = f"{run_dir} --dataset {config.dataset}" if is_user_data(config.dataset) else run_dir
        raise Interrupted(epoch, again if resumable else None) from None
    return RunResult(model.eval(), state.history, test, val, run_dir, state.train_seconds, state.warnings)


def is_judged(epoch: int, epochs: int, every: int) -> bool:
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
            loss, logits = step(to_float(x), y)
            loss_sum += loss * len(idx)
            correct += (logits.argmax(dim=1) == y).sum()
    seconds = time.perf_counter() - start
    total = loss_sum.item()
    if not math.isfinite(total):
        raise TrainingDiverged(f"the training loss became {total} in epoch {epoch}; try a lower --lr")
    return total / len(labels), int(correct.item()) / len(labels), seconds


def alternated(state: TrainState, idx: torch.Tensor, epoch: int) -> torch.Tensor | None:
    """Which of the batch's images alternating flips mirror in this epoch: the fixed half in odd
    epochs, the others in even ones (None: no alternating flips, a fresh coin per image)."""
    return None if state.flip_half is None else state.flip_half[idx] ^ (epoch % 2 == 0)


def judge(model: Classifier, data: tuple[torch.Tensor, torch.Tensor], recipe: Recipe,
          progress: str | None = None) -> tuple[Evaluation, float]:  # fmt: skip
    """An epoch's figures on the judged split, and their seconds: the image and its mirror only, a
    fifth of the cost of every view (the final figures use them all)."""
    start = time.perf_counter()
    judged = evaluate(Classifier(model.net, replace(model.views, shift=0), model.data), *data, recipe.eval_batch_size,
                      progress)  # fmt: skip
    return judged, time.perf_counter() - start


def final_figures(model: Classifier, data: Dataset, splits: Splits, recipe: Recipe,
                  progress: str | None = None) -> tuple[Evaluation, Evaluation | None]:  # fmt: skip
    """Test (and validation) figures of the model exactly as saved and as `lenet eval` loads it
    (the default layout, float32, every view), so the two always agree to the image."""
    model.net.to(memory_format=torch.contiguous_format)
    test = evaluate(model, data.test_images, data.test_labels, recipe.eval_batch_size, progress)
    val = evaluate(model, *splits.judged, recipe.eval_batch_size, progress) if splits.judged_name == "val" else None
    return test, val


def _warn(state: TrainState, text: str, on_warning: Callable[[str], None] | None) -> None:
    state.warnings.append(text)
    if on_warning is not None:
        on_warning(text)


# --- the run directory ------------------------------------------------------------------


def _new_run_dir(config: TrainConfig, data: Dataset, device: torch.device) -> Path | None:
    if not config.save:
        return None
    if config.name is not None:
        run_dir = runs.create_run_dir(config.out, config.name)
    else:
        run_dir = runs.create_unique_run_dir(config.out, runs.default_run_name(config.recipe_name, f"seed{config.seed}"))
    runs.write_config(run_dir, _config_record(config, data, device))
    return run_dir


def _resume_run_dir(run_dir: Path, state: TrainState, model: Classifier) -> Path:
    saved = runs.read_train_state(run_dir)
    if saved is not None:  # else the run ended before its first epoch did: start it over
        state.restore(saved)
        # A kill may have come between the state and the other writes of its epoch.
        runs.save_epoch(run_dir, state.to_dict(), state.history, model)
    return run_dir


MAX_SKIPPED_RECORDED = 1000  # files left out by --skip-bad that config.json names; it counts them all


def _config_record(config: TrainConfig, data: Dataset, device: torch.device) -> dict:
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
        "engine": asdict(config.engine),
        "data": {"name": data.spec.name, "source": data.source, "sha256": data.sha256, "spec": data.spec.to_dict(),
                 **({"skipped": list(data.skipped[:MAX_SKIPPED_RECORDED]), "skipped_count": len(data.skipped)}
                    if data.skipped else {}),
                 "skip_bad": config.skip_bad},
    }


def _summary(model: Classifier, test: Evaluation, val: Evaluation | None, state: TrainState) -> dict:
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


def resume_config(run_dir: str | Path, **overrides) -> TrainConfig:
    """The TrainConfig a run was started with, read back from its config.json."""
    saved = runs.read_config(Path(run_dir))
    try:
        recipe, engine = _recipe_and_engine(saved)
        config = TrainConfig(
            recipe=Recipe.from_dict(recipe, f"{run_dir}/{runs.CONFIG_FILE}"), recipe_name=saved["recipe_name"],
            seed=saved["seed"], dataset=saved["data"].get("name", DEFAULT), val_split=saved["val_split"],
            device=saved["device"], deterministic=saved["deterministic"], eval_every=saved.get("eval_every", 1),
            out=str(Path(run_dir).parent), name=Path(run_dir).name, engine=Engine(**engine),
            skip_bad=bool(saved["data"].get("skip_bad", False)),
        )  # fmt: skip
    except (KeyError, TypeError) as e:
        raise CheckpointError(f"{run_dir}: config.json lacks what a resume needs ({e})") from None
    return replace(config, **overrides)


def recorded_data(run_dir: str | Path) -> DataSpec:
    """What a run's config.json says of its data: name, classes and digest (from the four tensor
    hashes, for a run saved before DataSpec held the digest; Fashion-MNIST before any other)."""
    record = runs.read_config(Path(run_dir)).get("data", {})
    try:
        spec = DataSpec.from_dict(record["spec"]) if "spec" in record else default_spec()
        if not spec.sha256 and is_user_data(spec.name) and isinstance(record.get("sha256"), dict):
            spec = replace(spec, sha256=data_digest(record["sha256"]))
    except (LenetError, AttributeError, TypeError) as e:
        raise CheckpointError(f"{run_dir}: config.json's data record is damaged ({e})") from None
    return spec


def _recipe_and_engine(saved: dict) -> tuple[dict, dict]:
    """config.json's recipe and engine; a run saved when precision was an engine setting has it moved over."""
    recipe, engine = dict(saved["recipe"]), dict(saved.get("engine", {}))
    precision = engine.pop("precision", None)
    if precision is not None and "precision" not in recipe:
        recipe["precision"] = precision
    return recipe, engine


def _bar(config: TrainConfig, description: str) -> str | None:
    """An evaluation's bar description, when the run shows progress."""
    return description if config.progress else None


def set_determinism(device: torch.device, deterministic: bool) -> None:
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = not deterministic
        torch.use_deterministic_algorithms(deterministic, warn_only=False)
        if deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


# --- several seeds ----------------------------------------------------------------------


def train_seeds(
    config: TrainConfig,
    seeds: int,
    data: Dataset | None = None,
    on_run: Callable[[int, RunResult], None] | None = None,
    **callbacks,
) -> tuple[list[RunResult], dict]:
    """Train seeds config.seed .. config.seed + seeds - 1; runs go in out/NAME/seed-K/.

    Returns the runs and the statistics of their final test accuracy (also saved as
    out/NAME/seeds.json when saving).
    """
    data = data or load_dataset(config.dataset, config.data_dir, skip_bad=config.skip_bad)
    group = None
    if config.save:
        group = (runs.create_run_dir(config.out, config.name) if config.name is not None else
                 runs.create_unique_run_dir(config.out, runs.default_run_name(config.recipe_name, f"{seeds}seeds")))  # fmt: skip
    results = []
    for seed in range(config.seed, config.seed + seeds):
        out = str(group) if group is not None else config.out
        result = train(replace(config, seed=seed, out=out, name=f"seed-{seed}"), data, **callbacks)
        results.append(result)
        if on_run is not None:
            on_run(seed, result)
    stats = seed_statistics(
        [r.final.accuracy for r in results],
        stuck=sum(is_stuck(r.final.accuracy, r.model.net.config.num_classes) for r in results),
        seeds=list(range(config.seed, config.seed + seeds)),
    )
    if group is not None:
        runs.write_seeds(group, config.recipe.to_dict(), stats)
    return results, stats
