"""The SPACE file of `lenet sweep`: a base recipe, the fields that vary (a grid, or draws), seeds and budget.

Checked in full before anything starts: an unknown field or setting, an empty list, a wrong type,
a value a recipe refuses, more trials than a grid holds, a space with nothing to vary: one line.
"""

from __future__ import annotations

import math
import os
import random
from dataclasses import dataclass, replace
from typing import Any

from lenet.core.errors import LenetError, UnknownDataset, UsageError, short_repr
from lenet.core.values import bounds, check_value
from lenet.data.registry import CHANNELS, MAX_IMAGE_SIZE, MIN_IMAGE_SIZE, dataset_name
from lenet.training.recipes import RECIPES, Recipe, check_field_value, field_types, get_recipe, is_recipe_file
from lenet.runs.record import load_toml
from lenet.training.recipes import load_recipe_file, recipe_from_table

METRICS = {"final": "after the last epoch", "best": "at the best epoch"}
DRAWS = ("choice", "uniform", "loguniform")  # how a drawn field is written: { uniform = [low, high] }
SEARCHES = ("random", "optuna")  # random: lenet's own seeded draws; optuna: Tune's OptunaSearch (TPE)
TOP_LEVEL = ("name", "base", "dataset", "search", "max_concurrent", "trials", "seeds", "first_seed", "seeds_per_trial", "val_split", "metric",
             "sample_seed", "max_failures", "recipe", "vary", "asha", "data", "skip_bad", "channels", "size")  # fmt: skip
DEFAULT_VAL_SPLIT = 5000  # held-out training images: the test set decides nothing in a sweep
SIGNIFICANT = 4  # drawn values are rounded to this many digits: readable tables and recipe files



@dataclass(frozen=True)
class Axis:
    """One varied recipe field: every value of a list in turn ("grid"), or a draw per configuration."""

    field: str
    kind: str  # "grid", "choice", "uniform", "loguniform"
    values: tuple  # the values, or (low, high) of a range


@dataclass(frozen=True)
class Asha:
    grace_period: int = 1  # epochs every trial gets before it may be stopped
    reduction_factor: int = 3  # about 1 in this many trials goes on at each rung


@dataclass(frozen=True)
class Space:
    """What a SPACE file says, with the command line's overrides applied, checked."""

    base: Recipe
    base_name: str
    axes: tuple[Axis, ...] = ()
    trials: int | None = None  # configurations; None: the whole grid
    seeds: int = 1
    first_seed: int = 0
    seeds_per_trial: int = 1  # seeds of a configuration trained one after another in one Tune trial
    val_split: int = DEFAULT_VAL_SPLIT
    metric: str = "final"
    sample_seed: int = 0  # seeds the draws and the choice of grid points, so a plan is reproducible
    max_failures: int = 3  # retries of a trial whose process or node died
    asha: Asha | None = None
    train_subset: int | None = None  # the first N training images only (quick sweeps, tests)
    test_subset: int | None = None
    name: str | None = None
    dataset: str | None = None  # a registry name, folder:PATH or csv:PATH; None: Fashion-MNIST
    search: str = "random"
    max_concurrent: int | None = None  # trials at a time at most (None: as many as the CPUs allow)
    skip_bad: bool = False  # folder:PATH: train on the readable images, as lenet train --skip-bad
    channels: int | None = None  # folder:PATH: grey (1) or colour (3), as lenet train --channels; None: inferred
    size: int | None = None  # folder:PATH: the images' side, as lenet train --size; None: inferred


@dataclass(frozen=True)
class Options:
    """Command-line settings; None keeps the SPACE file's value."""

    trials: int | None = None
    seeds: int | None = None
    val_split: int | None = None
    epochs: int | None = None
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    address: str | None = None  # an existing Ray cluster; None: RAY_ADDRESS, else a local Ray
    local_cpus: int | None = None  # CPUs of the local Ray (None: every core)
    out: str = "runs"
    name: str | None = None
    data_dir: str | None = None
    dataset: str | None = None  # --dataset: overrides the file's
    storage: str | None = None  # Tune's storage_path: s3://BUCKET/PREFIX or a path every node mounts
    skip_bad: bool | None = None  # --skip-bad: overrides the file's
    channels: int | None = None  # --channels and --size: override the file's
    size: int | None = None


def read_space(path: str | os.PathLike, options: Options = Options()) -> Space:
    """The SPACE file at `path`, checked in full, with `options` applied."""
    return parse_space(load_toml(path, "space file"), f"space file {path}", options)


def parse_space(table: dict[str, Any], where: str, options: Options = Options()) -> Space:
    unknown = sorted(set(table) - set(TOP_LEVEL))
    if unknown:
        raise LenetError(f"{where}: unknown setting {unknown[0]!r}; the settings are {', '.join(TOP_LEVEL)}")
    base_name = _get(table, "base", str, where, "default")
    base = load_recipe_file(base_name) if is_recipe_file(base_name) else _builtin(base_name, where)
    base = recipe_from_table(_get(table, "recipe", dict, where, {}), f"{where}: [recipe]", base)
    axes = tuple(_axis(name, spec, where) for name, spec in _get(table, "vary", dict, where, {}).items())
    if options.epochs is not None:
        if any(a.field == "epochs" for a in axes):
            raise LenetError(f"{where}: --epochs cannot override epochs, which the space varies")
        base = replace(base, epochs=options.epochs)
    asha = _asha(table["asha"], where) if "asha" in table else None
    data = _get(table, "data", dict, where, {})
    if set(data) - {"train_subset", "test_subset"}:
        raise LenetError(f"{where}: [data] takes train_subset and test_subset, not {sorted(set(data))[0]!r}")
    space = Space(
        base=base, base_name=base_name, axes=axes,
        trials=_pick(options.trials, _get(table, "trials", int, where, None, minimum=1)),
        seeds=_pick(options.seeds, _get(table, "seeds", int, where, 1, minimum=1)),
        first_seed=_get(table, "first_seed", int, where, 0, minimum=0),
        seeds_per_trial=_get(table, "seeds_per_trial", int, where, 1, minimum=1),
        val_split=_pick(options.val_split, _get(table, "val_split", int, where, DEFAULT_VAL_SPLIT, minimum=1)),
        metric=_get(table, "metric", str, where, "final"),
        sample_seed=_get(table, "sample_seed", int, where, 0, minimum=0),
        max_failures=_get(table, "max_failures", int, where, 3, minimum=0),
        asha=asha,
        train_subset=_get(data, "train_subset", int, f"{where}: [data]", None, minimum=2),
        test_subset=_get(data, "test_subset", int, f"{where}: [data]", None, minimum=1),
        name=_get(table, "name", str, where, None),
        dataset=_dataset(_pick(options.dataset, _get(table, "dataset", str, where, None)), where),
        search=_get(table, "search", str, where, "random"),
        max_concurrent=_get(table, "max_concurrent", int, where, None, minimum=1),
        skip_bad=_pick(options.skip_bad, _get(table, "skip_bad", bool, where, False)),
        channels=_pick(options.channels, _get(table, "channels", int, where, None, minimum=1)),
        size=_pick(options.size, _get(table, "size", int, where, None, minimum=1)),
    )  # fmt: skip
    if space.channels not in (None, *CHANNELS):
        raise LenetError(f"{where}: channels is 1 (grey) or 3 (colour), not {space.channels}")
    if space.size is not None and not MIN_IMAGE_SIZE <= space.size <= MAX_IMAGE_SIZE:
        raise LenetError(f"{where}: size is {MIN_IMAGE_SIZE} to {MAX_IMAGE_SIZE} pixels, not {space.size}")
    if space.search not in SEARCHES:
        raise LenetError(f"{where}: search must be one of {', '.join(map(repr, SEARCHES))}, not {space.search!r}")
    if space.search == "optuna":
        _check_optuna(space, where)
    if space.metric not in METRICS:
        raise LenetError(f"{where}: metric must be one of {', '.join(map(repr, METRICS))}, not {space.metric!r}")
    if not any(a.kind != "grid" for a in axes) and space.trials is not None and space.trials > grid_size(axes):
        raise LenetError(f"{where}: {space.trials} trials, but the grid holds only {grid_size(axes)} configurations")
    if any(a.kind != "grid" for a in axes) and space.trials is None:
        raise LenetError(f"{where}: a space with drawn fields ({', '.join(DRAWS)}) needs trials = N")
    if space.train_subset is not None and not space.val_split < space.train_subset:  # the data's own size: driver.py
        raise LenetError(f"{where}: val_split {space.val_split} must be below the {space.train_subset:,} training images")
    if not axes and space.seeds == 1:
        # An empty file would otherwise train the base recipe once: a plain `lenet train`, at sweep prices.
        raise LenetError(f"{where}: nothing to sweep; add a [vary] table, or seeds = N (N > 1) for a many-seed study")
    configurations(space)  # every configuration's recipe is built, so a bad value is found now
    return space


def _check_optuna(space: Space, where: str) -> None:
    if not space.axes or space.trials is None:
        raise LenetError(f"{where}: search = \"optuna\" needs fields to vary ([vary]) and trials = N")
    if space.seeds_per_trial < space.seeds:
        raise LenetError(f"{where}: search = \"optuna\" judges a configuration on all its seeds in one trial: "
                         f"seeds_per_trial must be {space.seeds} (seeds)")  # fmt: skip


def _builtin(name: str, where: str) -> Recipe:
    if name not in RECIPES:
        raise UsageError(f"{where}: base {name!r} is neither a recipe ({', '.join(RECIPES)}) nor a .toml file")
    return get_recipe(name)


def _dataset(name: str | None, where: str) -> str | None:
    """The data set as the registry spells it (Fashion-MNIST is fashion-mnist), or the usage error naming it."""
    try:
        return None if name is None else dataset_name(name)
    except UnknownDataset as e:
        raise UnknownDataset(f"{where}: {e}") from None


def _get(table: dict, key: str, kind: type, where: str, default, minimum: int | None = None):
    """table[key], checked as a recipe field or a flag is (core.values), or `default` where it is absent."""
    if key not in table:
        return default
    check_value(f"{where}: {key}", table[key], kind, bounds(low=minimum))
    return table[key]


def _pick(flag, from_file):
    return from_file if flag is None else flag


def _axis(name: str, spec: Any, where: str) -> Axis:
    where = f"{where}: [vary] {name}"
    kinds = field_types()
    if name not in kinds:
        raise LenetError(f"{where}: unknown recipe field; the fields are {', '.join(kinds)}")
    if isinstance(spec, list):
        kind, values = "grid", spec
    elif isinstance(spec, dict) and len(spec) == 1 and next(iter(spec)) in DRAWS:
        kind, values = next(iter(spec.items()))
        if not isinstance(values, list):
            raise LenetError(f"{where}: {kind} takes a list, not {short_repr(values)}")
    else:
        raise LenetError(f"{where}: write a list of values, or one of {{ {' | '.join(f'{d} = [...]' for d in DRAWS)} }}")
    if not values:
        raise LenetError(f"{where}: the list is empty, so there is nothing to try")
    values = [check_field_value(name, v, where) for v in values]
    if kind in ("uniform", "loguniform"):
        if kinds[name] not in (int, float):
            raise LenetError(f"{where}: {kind} needs a number field; {name} is {kinds[name].__name__}")
        if len(values) != 2 or not values[0] < values[1]:
            raise LenetError(f"{where}: {kind} takes [low, high] with low < high, not {short_repr(values)}")
        if kind == "loguniform" and values[0] <= 0:
            raise LenetError(f"{where}: loguniform needs a positive low end, not {values[0]}")
    elif len(set(values)) != len(values):
        raise LenetError(f"{where}: the list repeats a value")
    return Axis(name, kind, tuple(values))


def _asha(table: Any, where: str) -> Asha:
    where = f"{where}: [asha]"
    if not isinstance(table, dict):
        raise LenetError(f"{where} must be a table")
    if set(table) - {"grace_period", "reduction_factor"}:
        raise LenetError(f"{where} takes grace_period and reduction_factor, not {sorted(set(table))[0]!r}")
    return Asha(_get(table, "grace_period", int, where, Asha.grace_period, minimum=1),
                _get(table, "reduction_factor", int, where, Asha.reduction_factor, minimum=2))  # fmt: skip


def grid_size(axes: tuple[Axis, ...]) -> int:
    return math.prod(len(a.values) for a in axes if a.kind == "grid")


def configurations(space: Space) -> list[dict[str, Any]]:
    """The varied fields' values of every configuration, in trial order.

    Lists are a grid. A grid alone gives all its points, or `trials` of them picked at random;
    with drawn fields, configuration i takes grid point i (cycling) and draws the rest afresh.
    """
    if space.search == "optuna":  # proposed one at a time as the sweep runs (search.py); the ends are checked
        for axis in space.axes:
            for value in axis.values:
                replace(space.base, **{axis.field: value})
        return [None] * space.trials
    rng = random.Random(space.sample_seed)
    grid_axes = [a for a in space.axes if a.kind == "grid"]
    points = [{}]
    for axis in grid_axes:
        points = [{**p, axis.field: v} for p in points for v in axis.values]
    drawn = [a for a in space.axes if a.kind != "grid"]
    if not drawn:
        n = space.trials or len(points)
        chosen = points if n == len(points) else [points[i] for i in sorted(rng.sample(range(len(points)), n))]
    else:
        chosen = [{**points[i % len(points)], **{a.field: _draw(a, rng) for a in drawn}} for i in range(space.trials)]
    for i, values in enumerate(chosen):
        try:
            replace(space.base, **values)
        except LenetError as e:
            raise LenetError(f"trial-{i:04d} ({_describe(values)}): {e}") from None
    return chosen


def check_trainable(space: Space, train_images: int) -> None:
    """Refuse, before Ray starts, what `lenet train` refuses before it trains (training/build.check_schedule:
    a one-step warm-up, say), for every planned configuration on the sweep's data: `train_images` after the
    validation hold-out. One line naming the trial and its values. A search's configurations are proposed as
    the sweep runs: the base recipe with each end of each range is checked instead."""
    from lenet.training.build import check_schedule

    if space.search == "optuna":
        planned = [("the base recipe", {}), *((f"[vary] {a.field} = {v}", {a.field: v}) for a in space.axes
                                             for v in a.values)]  # fmt: skip
    else:
        planned = [(f"trial-{i:04d} ({_describe(values)})", values) for i, values in enumerate(configurations(space))]
    for name, values in planned:
        try:
            check_schedule(replace(space.base, **values), train_images)
        except LenetError as e:
            raise LenetError(f"{name}: {e}") from None


def _draw(axis: Axis, rng: random.Random):
    if axis.kind == "choice":
        return rng.choice(axis.values)
    low, high = axis.values
    if isinstance(low, int):
        if axis.kind == "uniform":
            return rng.randint(low, high)
        return min(high, max(low, round(math.exp(rng.uniform(math.log(low), math.log(high))))))
    value = rng.uniform(low, high) if axis.kind == "uniform" else math.exp(rng.uniform(math.log(low), math.log(high)))
    return float(f"{value:.{SIGNIFICANT}g}")


def _describe(values: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in values.items()) or "the base recipe"


