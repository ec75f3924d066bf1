"""The training loop: data resident on the device, index-slice batches, one run directory."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from . import runs
from .checkpoint import save_model
from .data import FashionMNIST, augment, batch_indices, holdout, load_fashion_mnist, to_float
from .device import describe, resolve_device
from .engine import Engine, forward_fn, make_optimizer, prepare, training_order
from .errors import CheckpointError, Interrupted, LenetError
from .files import write_json
from .metrics import Evaluation, evaluate, seed_statistics
from .models import LeNet, LeNetConfig, count_parameters, model_config, without_test_shifts
from .recipes import Recipe, get_recipe

CHANCE_MARGIN = 0.05  # accuracy within this of 1/classes after epoch 1 means a stuck run
STUCK_ADVICE = (
    "accuracy after epoch 1 is {accuracy:.1%}, chance level: the sigmoid units have saturated "
    "(the tutorial's Adam at lr 0.01 on [0, 1] inputs does this on about a third of seeds) and "
    "the run will most likely stay there; use --recipe default, or --lr 0.001, or --model lenet_relu"
)


def is_stuck(accuracy: float, num_classes: int = 10) -> bool:
    return accuracy < 1 / num_classes + CHANCE_MARGIN


class TrainingDiverged(LenetError):
    """The loss became NaN or infinite."""


@dataclass(frozen=True)
class TrainConfig:
    """What a run needs beyond its recipe: where, on what, and with which seed."""

    recipe: Recipe = field(default_factory=lambda: get_recipe("default"))
    recipe_name: str = "default"
    seed: int = 0
    val_split: int = 0  # hold out this many training images; then every epoch is judged on them
    device: str = "auto"
    deterministic: bool = False  # CUDA: deterministic kernels (the CPU is deterministic anyway)
    data_dir: str | None = None
    out: str = "runs"
    name: str | None = None  # run directory name; a fresh one is made up when None
    save: bool = True  # write the run directory
    progress: bool = True  # a progress bar on a terminal
    engine: Engine = field(default_factory=Engine)  # how the step runs; the maths stay the same


@dataclass
class RunResult:
    model: LeNet
    history: list[runs.EpochMetrics]
    final: Evaluation  # on the test set, always
    val: Evaluation | None  # on the validation split, if the run held one out
    run_dir: Path | None
    train_seconds: float
    warnings: list[str]


def build_model(recipe: Recipe) -> LeNet:
    return LeNet(recipe_model_config(recipe))


def recipe_model_config(recipe: Recipe) -> LeNetConfig:
    return model_config(recipe.model, flip_tta=recipe.test_flip, shift_tta=recipe.test_shift)


def build_optimizer(model: nn.Module, recipe: Recipe, engine: Engine = Engine()) -> torch.optim.Optimizer:
    params, kw = model.parameters(), {"lr": recipe.lr, "weight_decay": recipe.weight_decay}
    if recipe.optimizer == "adam":
        return make_optimizer(torch.optim.Adam, params, engine, **kw)
    if recipe.optimizer == "adamw":
        return make_optimizer(torch.optim.AdamW, params, engine, **kw)
    return make_optimizer(torch.optim.SGD, params, engine, momentum=recipe.momentum, nesterov=True, **kw)


def build_schedule(optimizer: torch.optim.Optimizer, recipe: Recipe, total_steps: int):
    if recipe.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=recipe.lr, total_steps=total_steps, pct_start=recipe.warmup
        )
    if recipe.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    return None


def train(
    config: TrainConfig = TrainConfig(),
    data: FashionMNIST | None = None,
    on_epoch: Callable[[runs.EpochMetrics], None] | None = None,
    on_warning: Callable[[str], None] | None = None,
    resume: str | Path | None = None,
) -> RunResult:
    """Train one model by `config`; judge it after every epoch on the validation or test set.

    With `resume` (a run directory made with the same config, see `resume_config`), the
    run continues after its last completed epoch and ends as an uninterrupted run would.
    """
    recipe = config.recipe
    device = resolve_device(config.device)
    _set_determinism(device, config.deterministic)
    data = (data or load_fashion_mnist(config.data_dir)).to(device)
    if config.val_split:
        (train_x, train_y), (eval_x, eval_y) = holdout(data.train_images, data.train_labels, config.val_split)
    else:
        (train_x, train_y), (eval_x, eval_y) = (data.train_images, data.train_labels), (data.test_images, data.test_labels)
    eval_split = "val" if config.val_split else "test"

    torch.manual_seed(config.seed)
    model = prepare(build_model(recipe).to(device), config.engine)
    optimizer = build_optimizer(model, recipe, config.engine)
    steps_per_epoch = -(-len(train_y) // recipe.batch_size)
    schedule = build_schedule(optimizer, recipe, recipe.epochs * steps_per_epoch)
    shuffle = torch.Generator().manual_seed(config.seed)
    augment_rng = torch.Generator(device=device).manual_seed(config.seed + 1)
    state = TrainState(model, optimizer, schedule, shuffle, augment_rng)
    forward = forward_fn(model, config.engine, on_warning)
    if resume is not None:
        run_dir = Path(resume)
        saved = runs.read_train_state(run_dir)
        if saved is not None:  # else the run ended before its first epoch did: start it over
            state.restore(saved, device)
            runs.write_metrics(run_dir, state.history)  # a kill may have come between the state and these writes
            save_model(model, runs.weights_path(run_dir), {"epoch": str(state.epoch)})
    else:
        run_dir = _start_run_dir(config, data, device) if config.save else None

    history, warnings = state.history, state.warnings
    epoch = state.epoch + 1
    try:
        for epoch in range(state.epoch + 1, recipe.epochs + 1):
            lr = optimizer.param_groups[0]["lr"]
            start = time.perf_counter()
            batches = _progress(
                batch_indices(len(train_y), recipe.batch_size, shuffle=True, generator=shuffle, device=device),
                config.progress, steps_per_epoch, f"epoch {epoch}/{recipe.epochs}",
            )  # fmt: skip
            with training_order(model, config.engine):
                loss_sum, correct = _train_epoch(
                    model, forward, optimizer, schedule, train_x, train_y, batches, recipe, augment_rng
                )
            seconds = time.perf_counter() - start
            if not math.isfinite(loss_sum):
                kept = f"; the weights of epoch {epoch - 1} are kept in {run_dir}" if run_dir and epoch > 1 else ""
                raise TrainingDiverged(f"the training loss became {loss_sum} in epoch {epoch}{kept}; try a lower --lr")
            state.train_seconds += seconds
            start = time.perf_counter()
            with without_test_shifts(model):  # a fifth of the cost; the final figures use every view
                judged = evaluate(model, eval_x, eval_y, recipe.eval_batch_size)
            row = runs.EpochMetrics(
                epoch=epoch, train_loss=loss_sum / len(train_y), train_accuracy=correct / len(train_y),
                eval_split=eval_split, eval_loss=judged.loss, eval_accuracy=judged.accuracy, seconds=seconds,
                images_per_s=len(train_y) / seconds, eval_seconds=time.perf_counter() - start, lr=lr,
            )  # fmt: skip
            history.append(row)
            if epoch == 1 and is_stuck(judged.accuracy, model.config.num_classes):
                warnings.append(STUCK_ADVICE.format(accuracy=judged.accuracy))
                if on_warning is not None:
                    on_warning(warnings[-1])
            state.epoch = epoch
            if run_dir is not None:
                # The state first: it alone decides where a resumed run goes on from.
                runs.write_train_state(run_dir, state.to_dict())
                runs.write_metrics(run_dir, history)
                save_model(model, runs.weights_path(run_dir), {"epoch": str(epoch)})
            if on_epoch is not None:
                on_epoch(row)

        # The final figure comes from the model exactly as saved and as `lenet eval` loads it (the
        # default layout, float32), so the two always agree to the image.
        model.to(memory_format=torch.contiguous_format)
        test = evaluate(model, data.test_images, data.test_labels, recipe.eval_batch_size)
        val = evaluate(model, eval_x, eval_y, recipe.eval_batch_size) if config.val_split else None
        if run_dir is not None:
            runs.write_summary(run_dir, _summary(config, model, test, val, history, state.train_seconds, warnings))
    except KeyboardInterrupt:  # Ctrl-C anywhere: in a step, an evaluation or between the atomic writes
        resumable = run_dir is not None and (run_dir / runs.STATE_FILE).exists()  # the disk is the truth
        raise Interrupted(epoch, run_dir if resumable else None) from None
    return RunResult(model.eval(), history, test, val, run_dir, state.train_seconds, warnings)


@dataclass
class TrainState:
    """Everything a run needs to go on after its last completed epoch, bit for bit."""

    model: LeNet
    optimizer: torch.optim.Optimizer
    schedule: object | None
    shuffle: torch.Generator
    augment_rng: torch.Generator
    epoch: int = 0
    history: list[runs.EpochMetrics] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    train_seconds: float = 0.0

    def to_dict(self) -> dict:
        return {
            "epoch": self.epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict() if self.schedule is not None else None,
            "rng": {"shuffle": self.shuffle.get_state(), "augment": self.augment_rng.get_state(),
                    "torch": torch.get_rng_state()},  # fmt: skip
            "history": [asdict(row) for row in self.history],
            "warnings": self.warnings,
            "train_seconds": self.train_seconds,
        }

    def restore(self, saved: dict, device: torch.device) -> None:
        try:
            self.model.load_state_dict(saved["model"])
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


def resume_config(run_dir: str | Path, **overrides) -> TrainConfig:
    """The TrainConfig a run was started with, read back from its config.json."""
    saved = runs.read_config(Path(run_dir))
    try:
        config = TrainConfig(
            recipe=Recipe.from_dict(saved["recipe"]), recipe_name=saved["recipe_name"], seed=saved["seed"],
            val_split=saved["val_split"], device=saved["device"].split(":")[0], deterministic=saved["deterministic"],
            out=str(Path(run_dir).parent), name=Path(run_dir).name, engine=Engine(**saved.get("engine", {})),
        )  # fmt: skip
    except (KeyError, TypeError) as e:
        raise CheckpointError(f"{run_dir}: config.json lacks what a resume needs ({e})") from None
    return replace(config, **overrides)


def _train_epoch(model, forward, optimizer, schedule, images, labels, batches, recipe, rng) -> tuple[float, int]:
    model.train()
    # Sums stay on the device so the step never waits for the host.
    loss_sum = torch.zeros((), device=images.device)
    correct = torch.zeros((), dtype=torch.long, device=images.device)
    for idx in batches:
        x, y = images[idx], labels[idx]
        if recipe.shift or recipe.flip:
            x = augment(x, recipe.shift, recipe.flip, rng)
        logits = forward(to_float(x))
        loss = F.cross_entropy(logits, y, label_smoothing=recipe.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if schedule is not None:
            schedule.step()
        loss_sum += loss.detach() * len(idx)
        correct += (logits.argmax(dim=1) == y).sum()
    return loss_sum.item(), int(correct.item())


def _progress(batches, enabled: bool, total: int, description: str):
    if not enabled:
        return batches
    try:
        from tqdm import tqdm
    except ImportError:
        return batches
    # disable=None: only on a terminal, so logs and CI output stay clean.
    return tqdm(batches, total=total, desc=description, unit="batch", leave=False, disable=None)


def _set_determinism(device: torch.device, deterministic: bool) -> None:
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = not deterministic
        torch.use_deterministic_algorithms(deterministic, warn_only=False)
        if deterministic:
            import os

            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def _start_run_dir(config: TrainConfig, data: FashionMNIST, device: torch.device) -> Path:
    name = config.name or runs.default_run_name(config.recipe_name, f"seed{config.seed}", config.out)
    run_dir = runs.create_run_dir(config.out, name)
    runs.write_config(
        run_dir,
        {
            "recipe_name": config.recipe_name,
            "recipe": config.recipe.to_dict(),
            "model_config": recipe_model_config(config.recipe).to_dict(),
            "seed": config.seed,
            "val_split": config.val_split,
            "eval_split": "val" if config.val_split else "test",
            "device": str(device),
            "device_name": describe(device),
            "deterministic": config.deterministic,
            "engine": asdict(config.engine),
            "data": {"source": data.source, "sha256": data.sha256},
            "environment": runs.environment(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
    )
    return run_dir


def _summary(
    config: TrainConfig, model: LeNet, test: Evaluation, val: Evaluation | None, history, train_seconds: float, warnings
) -> dict:
    return {
        "model": model.config.to_dict(),
        "parameters": count_parameters(model),
        "epochs": len(history),
        "train_seconds": train_seconds,
        "final_train_loss": history[-1].train_loss,
        "final_train_accuracy": history[-1].train_accuracy,
        "per_epoch_split": history[-1].eval_split,
        "val": {"loss": val.loss, "accuracy": val.accuracy} if val is not None else None,
        "test": test.to_dict(),
        "stuck": is_stuck(test.accuracy, model.config.num_classes),
        "warnings": warnings,
    }


def train_seeds(
    config: TrainConfig,
    seeds: int,
    data: FashionMNIST | None = None,
    on_run: Callable[[int, RunResult], None] | None = None,
    **callbacks,
) -> tuple[list[RunResult], dict]:
    """Train seeds config.seed .. config.seed + seeds - 1; runs go in out/NAME/seed-K/.

    Returns the runs and the statistics of their final test accuracy (also saved as
    out/NAME/seeds.json when saving).
    """
    data = data or load_fashion_mnist(config.data_dir)
    group = config.name or runs.default_run_name(config.recipe_name, f"{seeds}seeds", config.out)
    out = Path(config.out) / group
    if config.save:
        runs.create_run_dir(config.out, group)
    results = []
    for seed in range(config.seed, config.seed + seeds):
        result = train(replace(config, seed=seed, out=str(out), name=f"seed-{seed}"), data, **callbacks)
        results.append(result)
        if on_run is not None:
            on_run(seed, result)
    stats = seed_statistics(
        [r.final.accuracy for r in results],
        stuck=sum(is_stuck(r.final.accuracy) for r in results),
        seeds=list(range(config.seed, config.seed + seeds)),
    )
    if config.save:
        write_json(out / "seeds.json", {"recipe": config.recipe.to_dict(), "split": "test", **stats})
    return results, stats
