"""A sweep's trial, inside a Ray worker: one configuration's seeds trained one after another by the very
`train` that `lenet train` calls, in a scratch directory of the worker's node, each epoch reported to
Ray Tune with a checkpoint that carries the trial's run directories (carry.py)."""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from lenet.core.errors import Interrupted, LenetError
from lenet.sweep.carry import pack, restore
from lenet.runs import directory as runs
from lenet.runs.config import CONFIG_FILE
from lenet.runs.sweeps import FAILED_FILE, write_failed
from lenet.sweep.plan import Plan, threads
from lenet.training.recipes import Recipe


def run_trial(config: dict[str, Any], plan: Plan, data, carried: dict[int, bytes] | None = None) -> None:
    """Ray Tune's function trainable: train Tune trial config["unit"]'s seeds, reporting each epoch.

    A retry (Tune's checkpoint) or a resumed sweep (`carried`) goes on from each run's last completed
    epoch; a run with a summary.json is never trained again.
    """
    from ray import tune

    from lenet.training.engine import Engine
    from lenet.training.config import TrainConfig
    from lenet.training.loop import train
    from lenet.training.resume import resume_config

    index = config["unit"]
    unit = plan.units()[index]
    # A configuration that a search algorithm proposed arrives in `config`; a planned one is in the plan.
    values = plan.configurations[unit.configuration] or {k: v for k, v in config.items() if k != "unit"}
    recipe = replace(Recipe.from_dict(plan.space["base"]), **values)
    device = "cuda" if plan.gpus_per_trial > 0 else "cpu"
    engine = Engine(threads=threads(plan))
    with tempfile.TemporaryDirectory(prefix="lenet-trial-") as work:
        scratch = Path(work)
        checkpoint = tune.get_checkpoint()
        if checkpoint is not None:
            with checkpoint.as_directory() as saved:
                restore(plan, index, Path(saved), None, scratch)
        else:
            restore(plan, index, None, (carried or {}).get(index), scratch)

        def report(position: int, seed: int, epoch: int, accuracy: float, loss: float) -> None:
            step = position * recipe.epochs + epoch  # ASHA compares trials at equal steps
            with tempfile.TemporaryDirectory(prefix="lenet-checkpoint-") as into:
                pack(plan, index, scratch, Path(into))
                tune.report({"step": step, "seed": seed, "epoch": epoch, "val_accuracy": accuracy, "val_loss": loss},
                            checkpoint=tune.Checkpoint.from_directory(into))  # fmt: skip

        for position, seed in enumerate(unit.seeds):
            run_dir = scratch / plan.run_dir(unit.configuration, seed).relative_to(plan.directory)
            if runs.is_finished(run_dir) or (run_dir / FAILED_FILE).exists():
                continue  # finished before a retry or a resumed sweep: never trained again

            def on_epoch(row, position=position, seed=seed) -> None:
                # Tune may stop a trial at any report (ASHA, or the last step); the run's last epoch is
                # reported only after its final figures are on disk, so a stop there never cuts them.
                if row.epoch < recipe.epochs:
                    report(position, seed, row.epoch, row.eval_accuracy, row.eval_loss)

            try:
                if (run_dir / CONFIG_FILE).exists():  # a retry: on from the last completed epoch
                    config_ = resume_config(run_dir, recipe.teacher or None, progress=False, device=device,
                                            engine=engine)  # fmt: skip
                    result = train(config_, data=data, on_epoch=on_epoch, resume=run_dir)
                else:
                    config_ = TrainConfig(
                        recipe=recipe, recipe_name=f"{plan.name}/trial-{unit.configuration:04d}", seed=seed,
                        dataset=plan.dataset,
                        val_split=plan.space["val_split"], device=device, out=str(run_dir.parent), name=run_dir.name,
                        progress=False, engine=engine, skip_bad=bool(plan.space.get("skip_bad")),
                    )  # fmt: skip
                    result = train(config_, data=data, on_epoch=on_epoch)
            except Interrupted:
                raise
            except LenetError as e:  # the run's own failure (diverged, bad values): recorded, and the sweep goes on
                run_dir.mkdir(parents=True, exist_ok=True)
                write_failed(run_dir, e)
                # Reported (no figure: ASHA passes over a NaN) so that the record reaches the driver.
                report(position, seed, recipe.epochs, float("nan"), float("nan"))
                continue
            # The finished model's figure, every view: what the sweep's "final" metric ranks by.
            report(position, seed, recipe.epochs, result.val.accuracy, result.val.loss)
