"""The driver's progress lines, a Ray Tune callback; it also records in trials.json each trial that ends.

Imported only once Ray's authentication settings are in place (driver.py): importing Ray reads them.
"""

from __future__ import annotations

import time
from pathlib import Path

from ray.tune import Callback

from lenet.core.text import plural
from lenet.sweep.carry import unpack
from lenet.sweep.plan import Plan, record_configuration, record_trial, run_ended, run_metric

PROGRESS_EVERY_S = 15.0  # a progress line at most this often, and at every finished trial


class Progress(Callback):
    """A Tune callback (in the driver): records each Tune trial that ends in trials.json, and prints trials
    done / running / pending, counted over the whole sweep (earlier sessions' too), the best so far and the ETA.

    A trial on these lines is a configuration with all its seeds, a row of the table: where seeds_per_trial
    splits a configuration's seeds over several Tune trials, it is done when all of them have ended."""

    def __init__(self, plan: Plan, ended: set[int], interrupted, on_line) -> None:
        self.plan, self.on_line, self.interrupted = plan, on_line, interrupted
        self.start, self.last = time.monotonic(), 0.0
        self.total = len(plan.configurations)
        self.statuses: dict[int, str] = {u: "TERMINATED" for u in ended}  # Tune trial -> status; earlier sessions' ended
        self.fresh = 0

    def on_step_end(self, iteration, trials, **info) -> None:
        if self.interrupted.raised:
            return  # Tune is stopping every trial: no line counts them as done
        self.statuses.update({t.config["unit"]: t.status for t in trials})
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
        self.on_line(f"trial {self._name(trial.config['unit'])} retried (its process or node was lost); details in {trial.path}")

    def _name(self, unit: int) -> str:
        """A Tune trial as the table names it: its configuration, and its seeds where it holds only some."""
        u = self.plan.units()[unit]
        return str(u.configuration) + ("" if len(u.seeds) == len(self.plan.seeds) else
                                       f" ({plural(len(u.seeds), 'seed', count=False)} {', '.join(map(str, u.seeds))})")  # fmt: skip

    def _ended(self, unit: int, status: str) -> None:
        self.statuses[unit] = status
        self.fresh += 1
        self._line()

    def _configuration_statuses(self) -> list[str]:
        """Each configuration's state: done when every Tune trial of it ended, running when one runs."""
        states: list[list[str]] = [[] for _ in self.plan.configurations]
        for unit, u in enumerate(self.plan.units()):
            states[u.configuration].append(self.statuses.get(unit, "PENDING"))
        return ["done" if all(s in ("TERMINATED", "ERROR") for s in ss) else
                "running" if "RUNNING" in ss else "pending" for ss in states]  # fmt: skip

    def _line(self) -> None:
        self.last = time.monotonic()
        elapsed = self.last - self.start
        states = self._configuration_statuses()
        done, running = states.count("done"), states.count("running")
        left = len(self.plan.units()) - sum(s in ("TERMINATED", "ERROR") for s in self.statuses.values())
        eta = f", about {_duration(elapsed / self.fresh * left)} left" if self.fresh and left else ""  # by Tune trials
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
