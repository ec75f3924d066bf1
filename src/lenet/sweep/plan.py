"""A sweep's own record, in JSON: plan.json (every configuration, resolved) and trials.json (which
Tune trials ended, and how). `--resume` reads only these and the run directories, never Ray Tune's
pickled state, so whoever can write the sweep directory cannot run code in the driver."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from lenet.core.files import write_text
from lenet.data.registry import DEFAULT
from lenet.runs import directory as runs
from lenet.runs.metrics import judged
from lenet.runs.record import from_python
from lenet.runs.sweeps import (FAILED_FILE, PlanRecord, read_plan_record, read_trials, write_plan_record,
                               write_trials)  # fmt: skip
from lenet.sweep.space import Options, Space, configurations
from lenet.training.recipes import Recipe

SPACE_FILE = "space.toml"
ENDED = ("finished", "stopped early")  # how a trial ends for good; an errored one is tried again on --resume



@dataclass(frozen=True)
class Unit:
    """One Tune trial: a configuration and the seeds it trains, one after another."""

    configuration: int
    seeds: tuple[int, ...]


@dataclass(frozen=True)
class Plan:
    """Everything a sweep needs to run or resume; saved as plan.json in the sweep directory."""

    directory: str
    space: dict[str, Any]  # the Space, as JSON
    configurations: list[dict[str, Any]]
    cpus_per_trial: float
    gpus_per_trial: float
    data_sha256: str = ""  # the digest of the data the sweep trains on: a resume refuses other data

    @property
    def seeds(self) -> list[int]:
        first = self.space["first_seed"]
        return list(range(first, first + self.space["seeds"]))

    def recipe(self, i: int) -> Recipe:
        return replace(Recipe.from_dict(self.space["base"]), **self.configurations[i])

    def units(self) -> list[Unit]:
        per = self.space["seeds_per_trial"]
        seeds = self.seeds
        return [Unit(c, tuple(seeds[k : k + per])) for c in range(len(self.configurations))
                for k in range(0, len(seeds), per)]  # fmt: skip

    def run_dir(self, configuration: int, seed: int) -> Path:
        trial = Path(self.directory) / f"trial-{configuration:04d}"
        return trial if len(self.seeds) == 1 else trial / f"seed-{seed}"

    @property
    def dataset(self) -> str:
        return self.space.get("dataset") or DEFAULT  # a plan of before `dataset` is Fashion-MNIST's

    def data_note(self) -> str:
        """The data a sweep trained on: "fashion-mnist", or "mnist (the first 2,000 training images)"."""
        n_train, n_test = self.space.get("train_subset"), self.space.get("test_subset")
        parts = [f"the first {n:,} {kind} images" for n, kind in ((n_train, "training"), (n_test, "test")) if n]
        return self.dataset + (f" ({' and '.join(parts)})" if parts else "")

    @property
    def name(self) -> str:
        return Path(self.directory).name

    @property
    def varied(self) -> list[str]:
        return [a["field"] for a in self.space["axes"]]


def make_plan(space: Space, options: Options, space_text: str, data_sha256: str = "") -> Plan:
    """Create the sweep directory with its plan; an existing sweep is never overwritten."""
    name = options.name or space.name
    directory = (runs.create_run_dir(options.out, name) if name else
                 runs.create_unique_run_dir(options.out, runs.default_run_name("sweep", f"{len(configurations(space))}trials")))  # fmt: skip
    plan = Plan(
        directory=str(directory.resolve()), space=_space_json(space), configurations=configurations(space),
        cpus_per_trial=options.cpus_per_trial, gpus_per_trial=options.gpus_per_trial, data_sha256=data_sha256,
    )  # fmt: skip
    write_text(directory / SPACE_FILE, space_text)
    write_plan(plan)
    return plan


def write_plan(plan: Plan) -> None:
    write_plan_record(Path(plan.directory), from_python(PlanRecord, asdict(plan)))


def _space_json(space: Space) -> dict[str, Any]:
    d = asdict(space)
    d["base"] = space.base.to_dict()
    return d


def read_plan(directory: str | os.PathLike) -> Plan:
    """plan.json, checked by its schema; the directory is where plan.json is (the sweep may have moved)."""
    record = read_plan_record(Path(directory))
    return Plan(**{**record.model_dump(exclude={"format_version"}), "directory": str(Path(directory).resolve())})


def record_configuration(plan: Plan, number: int, values: dict[str, Any]) -> Plan:
    """A configuration proposed as the sweep runs (search = "optuna"), into plan.json; the plan with it."""
    configurations = list(plan.configurations)
    configurations[number] = values
    plan = replace(plan, configurations=configurations)
    write_plan(plan)
    return plan


def trial_records(plan: Plan) -> dict[int, str]:
    """How each Tune trial that ended did so (trial number to one of ENDED, or "error"), from trials.json."""
    return read_trials(Path(plan.directory))


def record_trial(plan: Plan, unit: int, how: str) -> None:
    records = trial_records(plan)
    records[unit] = how
    write_trials(Path(plan.directory), records)


def ended_units(plan: Plan) -> set[int]:
    """The Tune trials that need no more training: recorded as ended, or every run of theirs finished. A trial
    with a failed run (failed.json) has not ended, however it was recorded: --resume trains that run again."""
    records = trial_records(plan)
    ended = set()
    for i, u in enumerate(plan.units()):
        run_dirs = [plan.run_dir(u.configuration, s) for s in u.seeds]
        if any(run_failed(d) for d in run_dirs):
            continue
        if records.get(i) in ENDED or all(runs.is_finished(d) for d in run_dirs):
            ended.add(i)
    return ended


def run_ended(run_dir: Path) -> bool:
    """Whether a run trains no more in this session: finished, or failed (a --resume tries a failed run again)."""
    return runs.is_finished(run_dir) or run_failed(run_dir)


def run_failed(run_dir: Path) -> bool:
    return (run_dir / FAILED_FILE).exists() and not runs.is_finished(run_dir)


def run_metric(run_dir: Path, metric: str) -> float | None:
    """The deciding figure of a finished run: validation accuracy after the last epoch or at the best."""
    if not runs.is_finished(run_dir):
        return None
    run = runs.read_run(run_dir)
    if metric == "final":
        return run.summary.val.accuracy if run.summary.val is not None else None
    return max((row["val_accuracy"] for row in judged(run.metrics, "val_accuracy")), default=None)


def threads(plan: Plan) -> int:
    return max(1, int(plan.cpus_per_trial))  # a trial's CPUs: more threads would fight the other trials
