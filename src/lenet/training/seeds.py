"""Several seeds of one config: runs in out/NAME/seed-K/ and the statistics of their test accuracy."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from lenet.data.dataset import Dataset
from lenet.data.load import load_dataset
from lenet.runs import directory as runs
from lenet.training.config import RunResult, TrainConfig
from lenet.training.loop import train
from lenet.training.metrics import seed_statistics
from lenet.training.records import is_stuck


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
    data = data or load_dataset(config.dataset, config.data_dir, skip_bad=config.skip_bad, channels=config.channels,
                                size=config.size)
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
