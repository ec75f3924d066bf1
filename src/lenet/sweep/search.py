"""`search = "optuna"`: the SPACE file's fields as Ray Tune's search space, sampled by Tune's OptunaSearch
(TPE, seeded by sample_seed), behind lenet's numbering of configurations.

Configuration N is the Nth that Optuna proposes; the driver records its values in plan.json as it is
proposed, so the table, the run directories (trial-NNNN) and --resume read them as they read a planned
sweep's. A resumed sweep gives Optuna back what it had learnt (each ended configuration with its
figure, `add_evaluated_point`) and trains the proposed but unfinished configurations first; Optuna's
own state is never unpickled. Imported only under Ray (driver.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ray import tune
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from lenet.sweep.plan import Plan
from lenet.sweep.space import SIGNIFICANT

METRIC = "val_accuracy"


def tune_space(plan: Plan) -> dict[str, Any]:
    """The varied fields as Tune's domains: a list or a choice is tune.choice; uniform and loguniform
    ranges keep their kind, whole numbers staying whole."""
    space = {}
    for axis in plan.space["axes"]:
        kind, values = axis["kind"], list(axis["values"])
        if kind in ("grid", "choice"):
            space[axis["field"]] = tune.choice(values)
        elif isinstance(values[0], int):
            space[axis["field"]] = (tune.randint if kind == "uniform" else tune.lograndint)(values[0], values[1] + 1)
        else:
            space[axis["field"]] = (tune.uniform if kind == "uniform" else tune.loguniform)(values[0], values[1])
    return space


def optuna_search(seed: int) -> OptunaSearch:
    return OptunaSearch(metric=METRIC, mode="max", seed=seed)


class NumberedSearch(Searcher):
    """A Tune search algorithm (OptunaSearch) whose every proposal becomes lenet's next configuration.

    `unfinished`: configurations proposed in an earlier session and not ended, handed out first;
    `learnt`: (values, figure) of the configurations that ended, told to the algorithm before it proposes.
    """

    def __init__(self, inner: Searcher, plan: Plan, unfinished: list[int], learnt: list[tuple[dict, float]],
                 on_proposed: Callable[[int, dict[str, Any]], None]) -> None:  # fmt: skip
        super().__init__(metric=METRIC, mode="max")
        self.inner, self.learnt, self.on_proposed = inner, learnt, on_proposed
        self.configurations = list(plan.configurations)
        self.unfinished = list(unfinished)
        self.trials: dict[str, int] = {}  # Tune's trial id -> configuration
        self.asked: set[str] = set()  # trials the inner algorithm proposed (and so knows)

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        accepted = self.inner.set_search_properties(metric, mode, config, **spec)
        for values, figure in self.learnt:
            self.inner.add_evaluated_point(values, figure)
        return accepted

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if self.unfinished:
            number = self.unfinished.pop(0)
            values = dict(self.configurations[number])
        else:
            if None not in self.configurations:
                return Searcher.FINISHED
            proposal = self.inner.suggest(trial_id)
            if proposal is None or proposal == Searcher.FINISHED:
                return proposal
            number = self.configurations.index(None)
            values = {k: _readable(v) for k, v in proposal.items()}
            self.configurations[number] = values
            self.asked.add(trial_id)
            self.on_proposed(number, values)
        self.trials[trial_id] = number
        return {**values, "unit": number}

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id in self.asked:
            self.inner.on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id in self.asked:
            self.inner.on_trial_complete(trial_id, result=result, error=error)
        elif result and not error and result.get(METRIC) == result.get(METRIC):  # a resumed one: what it found
            self.inner.add_evaluated_point(self.configurations[self.trials[trial_id]], result[METRIC])


def _readable(value: Any) -> Any:
    """A drawn float to SIGNIFICANT digits (readable tables and recipe files, as lenet's own draws)."""
    return float(f"{value:.{SIGNIFICANT}g}") if isinstance(value, float) else value
