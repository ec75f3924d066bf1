"""What a run is given (`TrainConfig`) and what it gives back (`RunResult`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from lenet.data.registry import DEFAULT
from lenet.models.views import Classifier
from lenet.runs.metrics import EpochMetrics
from lenet.training.engine import Engine
from lenet.training.metrics import Evaluation
from lenet.training.recipes import Recipe, get_recipe


@dataclass(frozen=True)
class TrainConfig:
    """What a run needs beyond its recipe: where, on what, and with which seed."""

    recipe: Recipe = field(default_factory=lambda: get_recipe("default"))
    # Where the recipe came from, as config.json records it and the run's default name begins:
    # a built-in recipe's name, a recipe file's path, or a sweep's trial.
    recipe_name: str = "default"
    seed: int = 0
    dataset: str = DEFAULT  # a registry name (fashion-mnist, mnist, kmnist), folder:PATH or csv:PATH
    val_split: int = 0  # hold out this many training images; then every epoch is evaluated on them
    device: str = "auto"
    deterministic: bool = False  # CUDA: deterministic kernels (the CPU is deterministic anyway)
    data_dir: str | None = None
    out: str = "runs"
    name: str | None = None  # run directory name; a fresh one is made up when None
    save: bool = True  # write the run directory
    progress: bool = True  # a progress bar on a terminal
    eval_every: int = 1  # evaluate on the val/test split after every N-th epoch and the last; 0: after the last only
    engine: Engine = field(default_factory=Engine)  # how the step runs; the maths stay the same
    report: bool = True  # the command line writes the report after training; recorded, so a resume keeps it
    skip_bad: bool = False  # folder:PATH: leave unreadable files out (listed in config.json) instead of refusing
    # folder:PATH: read its images in grey (1) or colour (3), at this side; None: inferred from the folder
    # (recorded in config.json's data spec either way).
    channels: int | None = None
    size: int | None = None
    start_from: str | None = None  # a run (or .safetensors) whose weights this run starts from (fine-tuning)
    patience: int = 0  # stop after this many judged epochs without a better validation accuracy; 0: never


@dataclass
class RunResult:
    model: Classifier  # the trained network with the recipe's test-time views, in eval mode
    history: list[EpochMetrics]
    final: Evaluation  # on the test set, always, with every view
    val: Evaluation | None  # on the validation split (every view), if the run held one out
    run_dir: Path | None
    train_seconds: float
    warnings: list[str]
