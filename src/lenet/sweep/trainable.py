"""A sweep's trial, inside a Ray worker: one configuration's seeds trained one after another by the very
`train` that `lenet train` calls, each epoch reported to Ray Tune."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from lenet.core.errors import Interrupted, LenetError
from lenet.core.files import write_json
from lenet.sweep.plan import FAILED_FILE, Plan, threads
from lenet.training import runs


def run_trial(config: dict[str, Any], plan: Plan, data) -> None:
    """Ray Tune's function trainable: train one unit's seeds with lenet.training.loop.train, reporting each epoch.

    Each epoch's validation accuracy goes to Tune (for ASHA) with a checkpoint that records the
    run directory; the run directory itself is what a retry continues from.
    """
    from ray import tune

    from lenet.training.engine import Engine
    from lenet.training.loop import TrainConfig, resume_config, train

    unit = plan.units()[config["unit"]]
    recipe = plan.recipe(unit.configuration)
    device = "cuda" if plan.gpus_per_trial > 0 else "cpu"
    engine = Engine(threads=threads(plan))
    for position, seed in enumerate(unit.seeds):
        run_dir = plan.run_dir(unit.configuration, seed)
        if (run_dir / runs.SUMMARY_FILE).exists() or (run_dir / FAILED_FILE).exists():
            continue  # finished before a retry or a resumed sweep: never trained again

        def report(epoch: int, accuracy: float, loss: float, position=position, seed=seed, run_dir=run_dir) -> None:
            step = position * recipe.epochs + epoch  # ASHA compares trials at equal steps
            with tempfile.TemporaryDirectory() as marker:
                write_json(Path(marker) / "trial.json", {"run_dir": str(run_dir), "seed": seed, "epoch": epoch})
                tune.report({"step": step, "seed": seed, "epoch": epoch, "val_accuracy": accuracy, "val_loss": loss},
                            checkpoint=tune.Checkpoint.from_directory(marker))  # fmt: skip

        def on_epoch(row) -> None:
            # Tune may stop a trial at any report (ASHA, or the last step); the run's last epoch is
            # reported only after its final figures are on disk, so a stop there never cuts them.
            if row.epoch < recipe.epochs:
                report(row.epoch, row.eval_accuracy, row.eval_loss)

        try:
            if (run_dir / runs.CONFIG_FILE).exists():  # a retry: on from the last completed epoch
                config_ = resume_config(run_dir, progress=False, device=device, engine=engine)
                result = train(config_, data=data, on_epoch=on_epoch, resume=run_dir)
            else:
                config_ = TrainConfig(
                    recipe=recipe, recipe_name=f"{plan.name}/trial-{unit.configuration:04d}", seed=seed,
                    val_split=plan.space["val_split"], device=device, out=str(run_dir.parent), name=run_dir.name,
                    progress=False, engine=engine,
                )  # fmt: skip
                result = train(config_, data=data, on_epoch=on_epoch)
        except Interrupted:
            raise
        except LenetError as e:  # the trial's own failure (diverged, bad values): recorded, and the sweep goes on
            run_dir.mkdir(parents=True, exist_ok=True)
            write_json(run_dir / FAILED_FILE, {"error": str(e), "type": type(e).__name__})
            continue
        # The finished model's figure, every view: what the sweep's "final" metric ranks by.
        report(recipe.epochs, result.val.accuracy, result.val.loss)

