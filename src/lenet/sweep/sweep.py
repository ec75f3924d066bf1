"""`lenet sweep`: many lenet runs over a space of recipes and seeds, on Ray Tune, judged on a validation split.

Ray Tune schedules the trials, stops poor ones early (ASHA) and retries the ones whose process or
node died; lenet adds no scheduler or result store of its own. Its record is the sweep directory:

    runs/SWEEP/
      space.toml         the SPACE file as given;  plan.json  every configuration, resolved
      trial-NNNN/        configuration NNNN: an ordinary run directory (or seed-K/ run directories)
      tune/              Ray Tune's experiment state and per-trial checkpoints (what --resume restores)
      sweep.csv, sweep.json, sweep.html, best_recipe.toml   the results, written at the end

A Tune trial is one configuration and a group of its seeds, trained one after another by the very
`lenet.training.loop.train` that `lenet train` calls. A retried trial goes on from each run's last completed
epoch (train_state.pt); a run with a summary.json is never trained again.

Only this module imports Ray, and only `lenet sweep` imports this module: training, predicting,
serving and `import lenet` never need Ray.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import random
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from lenet.training import runs
from lenet.data.registry import DEFAULT
from lenet.core.errors import Interrupted, LenetError, short_repr
from lenet.core.files import write_json, write_text
from lenet.training.recipes import RECIPES, Recipe, check_field_value, field_types, get_recipe, is_recipe_file, load_recipe_file
from lenet.training.recipes import read_toml, recipe_from_table, recipe_toml

try:  # the progress lines are a Tune callback; without Ray, `lenet sweep` says how to get it
    from ray.tune import Callback as _TuneCallback
except ImportError:
    _TuneCallback = object

INSTALL_HINT = "lenet sweep needs Ray: pip install 'lenet[sweep]' (Ray Tune 2.60)"
PLAN_FILE, SPACE_FILE, TUNE_DIR = "plan.json", "space.toml", "tune"
TABLE_CSV, TABLE_JSON, PAGE_FILE, BEST_RECIPE = "sweep.csv", "sweep.json", "sweep.html", "best_recipe.toml"
FAILED_FILE = "failed.json"  # in a run directory whose training failed for its own reasons (NaN, bad values)
METRICS = {"final": "after the last epoch", "best": "at the best epoch"}
DRAWS = ("choice", "uniform", "loguniform")  # how a drawn field is written: { uniform = [low, high] }
TOP_LEVEL = ("name", "base", "trials", "seeds", "first_seed", "seeds_per_trial", "val_split", "metric",
             "sample_seed", "max_failures", "recipe", "vary", "asha", "data")  # fmt: skip
DEFAULT_VAL_SPLIT = 5000  # held-out training images: the test set decides nothing in a sweep
PROGRESS_EVERY_S = 15.0  # a progress line at most this often, and at every finished trial
SIGNIFICANT = 4  # drawn values are rounded to this many digits: readable tables and recipe files


class SweepUnavailable(LenetError):
    """Ray is not installed."""


# --- the space ------------------------------------------------------------------------


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


def read_space(path: str | os.PathLike, options: Options = Options()) -> Space:
    """The SPACE file at `path`, checked in full, with `options` applied."""
    return parse_space(read_toml(path, "space file"), f"space file {path}", options)


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
    )  # fmt: skip
    if space.metric not in METRICS:
        raise LenetError(f"{where}: metric must be one of {', '.join(map(repr, METRICS))}, not {space.metric!r}")
    if not any(a.kind != "grid" for a in axes) and space.trials is not None and space.trials > grid_size(axes):
        raise LenetError(f"{where}: {space.trials} trials, but the grid holds only {grid_size(axes)} configurations")
    if any(a.kind != "grid" for a in axes) and space.trials is None:
        raise LenetError(f"{where}: a space with drawn fields ({', '.join(DRAWS)}) needs trials = N")
    train_images = space.train_subset or 60_000
    if not 0 < space.val_split < train_images:
        raise LenetError(f"{where}: val_split {space.val_split} must be below the {train_images:,} training images")
    configurations(space)  # every configuration's recipe is built, so a bad value is found now
    return space


def _builtin(name: str, where: str) -> Recipe:
    if name not in RECIPES:
        raise LenetError(f"{where}: base {name!r} is neither a recipe ({', '.join(RECIPES)}) nor a .toml file")
    return get_recipe(name)


def _get(table: dict, key: str, kind: type, where: str, default, minimum: int | None = None):
    if key not in table:
        return default
    value = table[key]
    if type(value) is not kind:
        raise LenetError(f"{where}: {key} must be {_type_name(kind)}, not {short_repr(value)}")
    if minimum is not None and value < minimum:
        raise LenetError(f"{where}: {key} must be at least {minimum}, not {value}")
    return value


def _type_name(kind: type) -> str:
    return {dict: "a table", str: "a string", int: "an integer"}.get(kind, kind.__name__)


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


# --- the plan: what runs where --------------------------------------------------------


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
    data_dir: str | None

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
    def name(self) -> str:
        return Path(self.directory).name

    @property
    def varied(self) -> list[str]:
        return [a["field"] for a in self.space["axes"]]


def make_plan(space: Space, options: Options, space_text: str) -> Plan:
    """Create the sweep directory with its plan; an existing sweep is never overwritten."""
    name = options.name or space.name
    directory = (runs.create_run_dir(options.out, name) if name else
                 runs.create_unique_run_dir(options.out, runs.default_run_name("sweep", f"{len(configurations(space))}trials")))  # fmt: skip
    plan = Plan(
        directory=str(directory.resolve()), space=_space_json(space), configurations=configurations(space),
        cpus_per_trial=options.cpus_per_trial, gpus_per_trial=options.gpus_per_trial, data_dir=options.data_dir,
    )  # fmt: skip
    write_text(directory / SPACE_FILE, space_text)
    write_json(directory / PLAN_FILE, asdict(plan))
    return plan


def _space_json(space: Space) -> dict[str, Any]:
    d = asdict(space)
    d["base"] = space.base.to_dict()
    return d


def read_plan(directory: str | os.PathLike) -> Plan:
    path = Path(directory) / PLAN_FILE
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        plan = Plan(**saved)
        # The directory may have moved (or be mounted elsewhere on this machine): it is where plan.json is.
        return replace(plan, directory=str(Path(directory).resolve()))
    except FileNotFoundError:
        raise LenetError(f"{directory}: not a sweep directory (no {PLAN_FILE})") from None
    except (OSError, ValueError, TypeError) as e:
        raise LenetError(f"{path}: not a lenet sweep plan ({e})") from None


# --- a trial, inside a Ray worker -----------------------------------------------------


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
    engine = Engine(threads=_threads(plan))
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


def _threads(plan: Plan) -> int:
    return max(1, int(plan.cpus_per_trial))  # a trial's CPUs: more threads would fight the other trials


# --- the driver -----------------------------------------------------------------------


@dataclass
class SweepResult:
    directory: Path
    rows: list[dict[str, Any]]
    best_recipe: Path | None
    page: Path | None
    seconds: float


def run_sweep(
    space_path: str | None = None,
    options: Options = Options(),
    resume: str | None = None,
    on_line: Callable[[str], None] = print,
) -> SweepResult:
    """Run (or, with `resume`, finish) a sweep; return its table. Everything is checked before Ray starts."""
    if resume is not None:
        plan = read_plan(resume)
        data_dir = options.data_dir or plan.data_dir
    else:
        space = read_space(space_path, options)
        if options.cpus_per_trial <= 0 or options.gpus_per_trial < 0:
            raise LenetError("--cpus-per-trial must be positive and --gpus-per-trial not negative")
        data_dir = options.data_dir
    ray, tune = _import_ray()
    data = _load_data(plan.space if resume is not None else asdict(space), data_dir)
    if resume is None:
        plan = make_plan(space, options, Path(space_path).read_text(encoding="utf-8"))
        on_line(f"sweep {plan.name}: {len(plan.configurations)} configurations x {len(plan.seeds)} seeds, "
                f"{len(plan.units())} trials, judged on {plan.space['val_split']:,} validation images")  # fmt: skip
    else:
        on_line(f"resuming sweep {plan.name}: {len(_finished_units(plan))} of {len(plan.units())} trials done")
    start = time.monotonic()
    started_ray = _connect(ray, options.address or os.environ.get("RAY_ADDRESS"), options.local_cpus, on_line)
    try:
        complete = _tune(tune, plan, data, resume is not None, on_line)
    finally:
        if started_ray or ray.is_initialized():
            ray.shutdown()
    if not complete:
        raise SweepInterrupted(plan.directory)
    return finish(plan, time.monotonic() - start, on_line)


class SweepInterrupted(Interrupted):
    """The sweep stopped before every trial ended (Ctrl-C); what finished is kept."""

    def __init__(self, directory: str):
        LenetError.__init__(self, f"the sweep stopped before every trial ended; finished runs are kept; "
                         f"continue with: lenet sweep --resume {directory}")  # fmt: skip


def _import_ray():
    try:
        import ray
        from ray import tune
    except ImportError:
        raise SweepUnavailable(INSTALL_HINT) from None
    return ray, tune


def _load_data(space: dict[str, Any], data_dir: str | None):
    from lenet.data.load import load_dataset

    data = load_dataset(DEFAULT, data_dir)
    n_train, n_test = space["train_subset"], space["test_subset"]
    if n_train is None and n_test is None:
        return data
    return replace(data, train_images=data.train_images[:n_train], train_labels=data.train_labels[:n_train],
                   test_images=data.test_images[:n_test], test_labels=data.test_labels[:n_test])  # fmt: skip


def _connect(ray, address: str | None, local_cpus: int | None, on_line) -> bool:
    """Join the cluster at `address`, or start a local Ray sized to this machine; True if lenet started it."""
    import logging

    # Tune's own tables and warnings would drown lenet's progress lines.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    quiet = {"log_to_driver": False, "logging_level": logging.ERROR}
    try:
        if address:
            ray.init(address=address, **quiet)
            on_line(f"on the Ray cluster at {address}: {ray.cluster_resources().get('CPU', 0):g} CPUs, "
                    f"{ray.cluster_resources().get('GPU', 0):g} GPUs")  # fmt: skip
            return False
        cpus = local_cpus or os.cpu_count()
        # address="local": a Ray of lenet's own, never a cluster someone else started on this host.
        ray.init(address="local", num_cpus=cpus, include_dashboard=False, _node_ip_address="127.0.0.1", **quiet)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise LenetError(f"cannot start or reach Ray{f' at {address}' if address else ''}: {_first_line(e)}") from None
    on_line(f"on a local Ray: {cpus} CPUs")
    return True


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def _tune(tune, plan: Plan, data, resume: bool, on_line) -> bool:
    """Run every unfinished trial on Ray Tune; True if all ended (finished, stopped early or failed)."""
    resources = {"cpu": plan.cpus_per_trial, "gpu": plan.gpus_per_trial}
    trainable = tune.with_resources(tune.with_parameters(run_trial, plan=plan, data=data), resources)
    progress = Progress(plan, on_line)
    tune_dir = Path(plan.directory) / TUNE_DIR
    if resume and tune.Tuner.can_restore(str(tune_dir)):
        tuner = tune.Tuner.restore(str(tune_dir), trainable, resume_unfinished=True, restart_errored=True)
        # The restored run config holds the interrupted driver's callback; Tuner.restore takes no new one.
        tuner._local_tuner.get_run_config().callbacks = [progress]
    else:
        space = plan.space
        asha = None
        if space["asha"] is not None:
            from ray.tune.schedulers import ASHAScheduler

            steps = space["seeds_per_trial"] * max(plan.recipe(i).epochs for i in range(len(plan.configurations)))
            asha = ASHAScheduler(time_attr="step", max_t=steps, grace_period=space["asha"]["grace_period"],
                                 reduction_factor=space["asha"]["reduction_factor"])  # fmt: skip
        tuner = tune.Tuner(
            trainable,
            param_space={"unit": tune.grid_search(list(range(len(plan.units()))))},
            tune_config=tune.TuneConfig(metric="val_accuracy", mode="max", scheduler=asha,
                                        trial_dirname_creator=lambda trial: f"unit-{trial.config['unit']:04d}"),
            run_config=tune.RunConfig(
                name=TUNE_DIR, storage_path=plan.directory, verbose=0, callbacks=[progress],
                failure_config=tune.FailureConfig(max_failures=space["max_failures"]),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            ),
        )  # fmt: skip
    try:
        results = tuner.fit()
    except (tune.TuneError, RuntimeError) as e:  # Tune's own failure (storage, the cluster), not a trial's
        raise LenetError(f"Ray Tune stopped: {_first_line(e)}; finished runs are kept; "
                         f"continue with: lenet sweep --resume {plan.directory}") from None  # fmt: skip
    # A resumed sweep whose trials had all ended runs none, and the callback then sees none end.
    return progress.all_ended() or results.num_terminated + results.num_errors == len(plan.units())


class Progress(_TuneCallback):
    """A Tune callback (in the driver) printing trials done / running / pending, the best so far and the ETA."""

    def __init__(self, plan: Plan, on_line) -> None:
        self.plan, self.on_line = plan, on_line
        self.start, self.last = time.monotonic(), 0.0
        self.total = len(plan.units())
        self.statuses: dict[int, str] = {}
        self.ended: set[int] = set()

    def on_step_end(self, iteration, trials, **info) -> None:
        self.statuses = {t.config["unit"]: t.status for t in trials}
        if time.monotonic() - self.last >= PROGRESS_EVERY_S:
            self._line()

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self.ended.add(trial.config["unit"])
        self.statuses[trial.config["unit"]] = "TERMINATED"
        self._line()

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self.ended.add(trial.config["unit"])
        self.statuses[trial.config["unit"]] = "ERROR"
        self._line()

    def all_ended(self) -> bool:
        return all(s in ("TERMINATED", "ERROR") for s in self.statuses.values()) and len(self.statuses) == self.total

    def _line(self) -> None:
        self.last = time.monotonic()
        elapsed = self.last - self.start
        done = sum(s in ("TERMINATED", "ERROR") for s in self.statuses.values())
        running = sum(s == "RUNNING" for s in self.statuses.values())
        best = _best_so_far(self.plan)
        fresh = len(self.ended)
        eta = f", about {_duration(elapsed / fresh * (self.total - done))} left" if fresh and done < self.total else ""
        self.on_line(f"trials {done}/{self.total} done, {running} running, {self.total - done - running} pending; "
                     f"{best}; {_duration(elapsed)} elapsed{eta}")  # fmt: skip


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


def _best_so_far(plan: Plan) -> str:
    best = None
    for c in range(len(plan.configurations)):
        for seed in plan.seeds:
            value = _run_metric(plan.run_dir(c, seed), plan.space["metric"])
            if value is not None and (best is None or value > best[0]):
                best = (value, f"trial-{c:04d} seed {seed}")
    return f"best so far {best[0]:.2%} val ({best[1]})" if best else "no run finished yet"


def _finished_units(plan: Plan) -> list[Unit]:
    return [u for u in plan.units() if all(_run_ended(plan.run_dir(u.configuration, s)) for s in u.seeds)]


def _run_ended(run_dir: Path) -> bool:
    return (run_dir / runs.SUMMARY_FILE).exists() or (run_dir / FAILED_FILE).exists()


def _run_metric(run_dir: Path, metric: str) -> float | None:
    """The deciding figure of a finished run: validation accuracy after the last epoch or at the best."""
    if not (run_dir / runs.SUMMARY_FILE).exists():
        return None
    run = runs.read_run(run_dir)
    if metric == "final":
        return run.summary["val"]["accuracy"]
    return max(row["val_accuracy"] for row in runs.judged(run.metrics, "val_accuracy"))


# --- the results ----------------------------------------------------------------------


def table_rows(plan: Plan) -> list[dict[str, Any]]:
    """One row per configuration, best first by the mean validation metric over its finished seeds."""
    from lenet.training.metrics import seed_statistics

    rows = []
    for c, values in enumerate(plan.configurations):
        seeds = []
        for seed in plan.seeds:
            run_dir = plan.run_dir(c, seed)
            entry: dict[str, Any] = {"seed": seed, "run": str(run_dir.relative_to(plan.directory))}
            if (run_dir / runs.SUMMARY_FILE).exists():
                summary = runs.read_run(run_dir).summary
                entry.update(status="stuck" if summary.get("stuck") else "done", val=_run_metric(run_dir, plan.space["metric"]),
                             test=summary["test"]["accuracy"])  # fmt: skip
            elif (run_dir / FAILED_FILE).exists():
                entry.update(status="failed", message=json.loads((run_dir / FAILED_FILE).read_text())["error"])
            elif (run_dir / runs.METRICS_FILE).exists():
                entry.update(status="stopped early" if plan.space["asha"] else "unfinished")
            else:
                entry.update(status="stopped early" if plan.space["asha"] else "not run")
            seeds.append(entry)
        finished = [s for s in seeds if "val" in s]
        row = {"trial": f"trial-{c:04d}", "params": values, "seeds": seeds, "finished": len(finished)}
        if finished:
            row["val"] = seed_statistics([s["val"] for s in finished])
            row["test"] = seed_statistics([s["test"] for s in finished])
        rows.append(row)
    # Complete configurations first (a partial one's mean is not comparable), then by the mean.
    rows.sort(key=lambda r: (r["finished"] < len(plan.seeds), -r["val"]["mean"] if "val" in r else math.inf, r["trial"]))
    return rows


def finish(plan: Plan, seconds: float, on_line=print) -> SweepResult:
    """Write the table (csv, json), the best recipe file and the page; print the table."""
    directory = Path(plan.directory)
    rows = table_rows(plan)
    metric = f"validation accuracy {METRICS[plan.space['metric']]}"
    write_json(directory / TABLE_JSON, {"sweep": plan.name, "metric": metric, "val_split": plan.space["val_split"],
                                        "varied": plan.varied, "seeds": plan.seeds, "rows": rows})  # fmt: skip
    write_text(directory / TABLE_CSV, _csv(plan, rows))
    best = None
    if rows and rows[0]["finished"] == len(plan.seeds):
        top = rows[0]
        c = int(top["trial"].split("-")[1])
        best = directory / BEST_RECIPE
        comments = [
            f"the best configuration of sweep {plan.name} ({top['trial']}): {metric} {top['val']['mean']:.2%} mean",
            f"over seeds {', '.join(map(str, plan.seeds))} on a validation split of {plan.space['val_split']} images",
            f"reproduce a seed: lenet train --recipe {BEST_RECIPE} --seed {plan.seeds[0]} "
            f"--val-split {plan.space['val_split']} --threads {_threads(plan)}"
            + (" (on the sweep's data subset)" if plan.space["train_subset"] or plan.space["test_subset"] else ""),
        ]  # fmt: skip
        write_text(best, recipe_toml(plan.recipe(c), comments))
    for line in table_text(plan, rows):
        on_line(line)
    page = _page(plan, rows, metric)
    on_line(f"table written to {directory / TABLE_CSV} and {directory / TABLE_JSON}")
    if best is not None:
        on_line(f"best recipe written to {best}")
    else:
        on_line("no best recipe: no configuration finished all its seeds")
    if page is not None:
        on_line(f"page written to {page}")
    return SweepResult(directory, rows, best, page, seconds)


def _csv(plan: Plan, rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["rank", "trial", *plan.varied, "seeds_finished", "val_mean", "val_std", "val_min",
                     "test_mean", "test_std", "test_min", "status"])  # fmt: skip
    for rank, row in enumerate(rows, 1):
        stats = [row[split][k] if split in row else "" for split in ("val", "test") for k in ("mean", "std", "min")]
        writer.writerow([rank, row["trial"], *(row["params"].get(f) for f in plan.varied), row["finished"], *stats,
                         _status(row)])  # fmt: skip
    return buffer.getvalue()


def _status(row: dict[str, Any]) -> str:
    counts: dict[str, int] = {}
    for s in row["seeds"]:
        counts[s["status"]] = counts.get(s["status"], 0) + 1
    text = ", ".join(f"{n} {status}" for status, n in counts.items())
    failed = [s["message"] for s in row["seeds"] if s["status"] == "failed"]
    return text + (f": {failed[0]}" if failed else "")


def table_text(plan: Plan, rows: list[dict[str, Any]]) -> list[str]:
    head = f"{'rank':>4}  {'trial':<10}  " + "  ".join(f"{f:>12}" for f in plan.varied)
    head += f"  {'val mean':>8}  {'val std':>7}  {'val min':>7}  {'test mean':>9}  status"
    lines = [f"ranked by validation accuracy {METRICS[plan.space['metric']]} (mean over seeds); "
             "test figures are for the record only", head]  # fmt: skip
    for rank, row in enumerate(rows, 1):
        params = "  ".join(f"{_value(row['params'].get(f)):>12}" for f in plan.varied)
        if "val" in row:
            figures = f"{row['val']['mean']:>8.2%}  {row['val']['std']:>7.2%}  {row['val']['min']:>7.2%}  {row['test']['mean']:>9.2%}"
        else:
            figures = f"{'-':>8}  {'-':>7}  {'-':>7}  {'-':>9}"
        lines.append(f"{rank:>4}  {row['trial']:<10}  {params}  {figures}  {_status(row)}")
    return lines


def _value(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _page(plan: Plan, rows: list[dict[str, Any]], metric: str) -> Path | None:
    """sweep.html: the table, the metric against each varied field, the top configurations' curves."""
    from lenet.insight import html_page as h

    try:
        from lenet.insight import plots
    except ImportError:
        return None  # matplotlib missing: the table and recipe are there; the page is an extra
    figures = []
    ranked = [r for r in rows if "val" in r]
    for name in plan.varied:
        points = [(r["params"][name], s["val"]) for r in ranked for s in r["seeds"] if "val" in s]
        if points:
            figures.append(h.png_figure(plots.png_bytes(plots.metric_against(name, points, metric)),
                                        f"{metric} against {name}", f"each dot one seed's run"))  # fmt: skip
    top = {}
    for r in ranked[:5]:
        run_dir = Path(plan.directory) / r["seeds"][0]["run"]
        top[f"{r['trial']} seed {r['seeds'][0]['seed']}"] = runs.read_metrics(run_dir)
    if top:
        figures.append(h.png_figure(plots.png_bytes(plots.compare_curves(top, "the top configurations")),
                                    "learning curves of the top configurations"))  # fmt: skip
    headers = ["rank", "trial", *plan.varied, "seeds finished", "val mean", "val std", "val min", "test mean", "status"]
    body = [[i, r["trial"], *(r["params"].get(f) for f in plan.varied), r["finished"],
             *((f"{r['val'][k]:.2%}" for k in ("mean", "std", "min")) if "val" in r else ("-",) * 3),
             f"{r['test']['mean']:.2%}" if "test" in r else "-", _status(r)] for i, r in enumerate(rows, 1)]  # fmt: skip
    html = h.page(
        f"lenet sweep {plan.name}",
        [
            h.section("Ranking", h.paragraph(f"Ranked by {metric} on {plan.space['val_split']:,} held-out training "
                                             "images (mean over seeds). The test figures decided nothing; they are "
                                             "for the record."), h.table(headers, body)),  # fmt: skip
            h.section("What mattered", *figures),
            h.section("Base recipe", h.key_value_table(plan.space["base"])),
        ],
        f"{len(plan.configurations)} configurations x {len(plan.seeds)} seeds",
    )
    path = Path(plan.directory) / PAGE_FILE
    write_text(path, html)
    return path
