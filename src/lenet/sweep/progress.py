"""The driver's progress lines, a Ray Tune callback; it also records in trials.json each trial that ends.

Imported only once Ray's authentication settings are in place (driver.py): importing Ray reads them.
"""

from __future__ import annotations

import time
from pathlib import Path

from ray.tune import Callback

from lenet.sweep.carry import unpack
from lenet.sweep.plan import Plan, record_configuration, record_trial, run_ended, run_metric

PROGRESS_EVERY_S = 15.0  # a progress line at most this often, and at every finished trial


class Progress(Callback):
    """A Tune callback (in the driver): records each trial that ends in trials.json, and prints trials
    done / running / pending, counted over the whole sweep (earlier sessions' too), the best so far and the ETA."""

    def __init__(self, plan: Plan, ended: set[int], interrupted, on_line) -> None:
        self.plan, self.on_line, self.interrupted = plan, on_line, interrupted
        self.start, self.last = time.monotonic(), 0.0
        self.total = len(plan.units())
        self.before = len(ended)  # ended in an earlier session
        self.statuses: dict[int, str] = {}
        self.fresh = 0

    def on_step_end(self, iteration, trials, **info) -> None:
        if self.interrupted.raised:
            return  # Tune is stopping every trial: no line counts them as done
        self.statuses = {t.config["unit"]: t.status for t in trials}
        if time.monotonic() - self.last >= PROGRESS_EVERY_S:
            self._line()

    def proposed(self, number: int, values: dict) -> None:
        """A search algorithm proposed configuration `number`: into plan.json before its trial starts."""
        self.plan = record_configuration(self.plan, number, values)

    def on_checkpoint(self, iteration, trials, trial, checkpoint, **info) -> None:
        # The trial's run directories, as of its last epoch, into the driver's --out: the table, the
        # progress lines and --resume read them there, whichever node trains and whatever befalls it.
        with checkpoint.as_directory() as saved:
            unpack(self.plan, trial.config["unit"], Path(saved), Path(self.plan.directory))

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        unit = trial.config["unit"]
        if self.interrupted.raised:
            return  # stopped by Ctrl-C: not ended, and --resume goes on with it
        u = self.plan.units()[unit]
        whole = all(run_ended(self.plan.run_dir(u.configuration, s)) for s in u.seeds)
        record_trial(self.plan, unit, "finished" if whole else "stopped early")
        self._ended(unit, "TERMINATED")

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        record_trial(self.plan, trial.config["unit"], "error")
        self._ended(trial.config["unit"], "ERROR")

    def on_trial_recover(self, iteration, trials, trial, **info) -> None:
        self.on_line(f"trial {trial.config['unit']} retried (its process or node was lost); details in {trial.path}")

    def _ended(self, unit: int, status: str) -> None:
        self.statuses[unit] = status
        self.fresh += 1
        self._line()

    def _line(self) -> None:
        self.last = time.monotonic()
        elapsed = self.last - self.start
        done = self.before + sum(s in ("TERMINATED", "ERROR") for s in self.statuses.values())
        running = sum(s == "RUNNING" for s in self.statuses.values())
        eta = f", about {_duration(elapsed / self.fresh * (self.total - done))} left" if self.fresh and done < self.total else ""
        self.on_line(f"trials {done}/{self.total} done, {running} running, {self.total - done - running} pending; "
                     f"{_best_so_far(self.plan)}; {_duration(elapsed)} elapsed{eta}")  # fmt: skip


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


def _best_so_far(plan: Plan) -> str:
    best = None
    for c in range(len(plan.configurations)):
        for seed in plan.seeds:
            value = run_metric(plan.run_dir(c, seed), plan.space["metric"])
            if value is not None and (best is None or value > best[0]):
                best = (value, f"trial-{c:04d} seed {seed}")
    return f"best so far {best[0]:.2%} val ({best[1]})" if best else "no run finished yet"
