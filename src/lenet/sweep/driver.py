"""The driver of `lenet sweep`: the plan, a Ray (a cluster's, or a local one with a token of its own),
Ray Tune over the trials still to run, progress lines, and the table at the end.

A resume reads only lenet's own JSON records and the run directories (plan.py), and starts a new Tune
experiment over the trials that have not ended; Tune's pickled state (tuner.pkl) is never read.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from lenet.core.errors import Interrupted, LenetError
from lenet.core.text import clip
from lenet.runs.sweeps import SessionRecord, read_sessions, write_sessions
from lenet.sweep.carry import carried
from lenet.sweep.plan import Plan, ended_units, make_plan, read_plan, run_metric
from lenet.sweep.space import Options, check_trainable, read_space
from lenet.sweep.table import SweepResult, finish
from lenet.sweep.trainable import run_trial

INSTALL_HINT = "lenet sweep needs Ray: pip install 'lenet[sweep]' (Ray Tune 2.60)"
TUNE_DIR = "tune"  # Tune's experiment of the first session; a resume's is tune-resume-N
AUTH_ENV = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH", "RAY_AUTH_TOKEN")
WORKER_NICENESS = "RAY_worker_niceness"  # Ray's setting, read by the raylet lenet starts
# What lenet sets in the environment for Ray and Tune (_quiet, _connect), restored when the sweep ends.
SWEEP_ENV = (
    "TUNE_PRINT_ALL_TRIAL_ERRORS",
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S",
    "RAY_AIR_NEW_OUTPUT",
    "TUNE_DISABLE_SIGINT_HANDLER",
    WORKER_NICENESS,
)


class SweepUnavailable(LenetError):
    """Ray is not installed."""


class SweepInterrupted(Interrupted):
    """Ctrl-C: the trials under way were stopped; what finished is kept, and the table says it is partial."""

    def __init__(self, directory: str):
        LenetError.__init__(self, f"interrupted; finished runs and completed epochs are kept; "
                                  f"continue with: lenet sweep --resume {directory}")  # fmt: skip


def run_sweep(
    space_path: str | None = None,
    options: Options = Options(),
    resume: str | None = None,
    on_line: Callable[[str], None] = print,
) -> SweepResult:
    """Run (or, with `resume`, finish) a sweep; return its table. Everything is checked before Ray starts."""
    if resume is not None:
        plan = read_plan(resume)
        data_dir = options.data_dir  # a run's files never choose a path to read: the data is named again
    else:
        space = read_space(space_path, options)
        if options.cpus_per_trial <= 0 or options.gpus_per_trial < 0:
            raise LenetError("--cpus-per-trial must be positive and --gpus-per-trial not negative")
        data_dir = options.data_dir
    address = options.address or os.environ.get("RAY_ADDRESS")
    # The token is in place before Ray is imported: Ray reads its authentication settings then. Both it and
    # Ray's and Tune's settings are set for the sweep only: a library caller's process is left as it was.
    with restored_environment(SWEEP_ENV), contextlib.nullcontext() if address else private_token():
        _quiet()
        ray, tune = _import_ray()
        data = (_resumed_data(plan, options.dataset, data_dir) if resume is not None
                else _load_data(asdict(space), data_dir))  # fmt: skip
        if resume is None:  # what lenet train refuses up front, refused for every trial before Ray starts
            check_trainable(space, len(data.train_labels) - space.val_split)
        if resume is not None:
            ended = ended_units(plan)
            whole = {c for c in range(len(plan.configurations))
                     if all(u in ended for u, unit in enumerate(plan.units()) if unit.configuration == c)}  # fmt: skip
            on_line(f"resuming sweep {plan.name} from its own records (plan.json, trials.json, run directories; "
                    f"no Tune state): {len(whole)} of {len(plan.configurations)} trials done")  # fmt: skip
        start = time.monotonic()
        interrupted, to_run = False, resume is None or len(ended) < len(plan.units())
        try:
            if to_run:
                _connect(ray, address, options.local_cpus, on_line)
                _check_storage(ray, options.storage)
            if resume is None:  # the sweep directory is made only once Ray is there and fit for it
                plan = make_plan(space, options, Path(space_path).read_text(encoding="utf-8"), data.spec.sha256)
                ended = set()
                on_line(f"sweep {plan.name}: {len(plan.configurations)} configurations x {len(plan.seeds)} seeds, "
                        f"{len(plan.units())} trials, judged on {plan.space['val_split']:,} validation images")  # fmt: skip
            if to_run:
                interrupted = _tune(tune, plan, data, ended, options.storage, on_line)
        finally:
            # Also where connecting failed after ray.init, or half way through it: Ray's processes end
            # here, not at the interpreter's exit (ray.shutdown may run twice, or with nothing started).
            if to_run or ray.is_initialized():
                ray.shutdown()
    plan = read_plan(plan.directory)  # with the configurations a search algorithm proposed
    result = finish(plan, time.monotonic() - start, on_line, partial=interrupted)
    if interrupted:
        raise SweepInterrupted(plan.directory)
    return result


@contextlib.contextmanager
def private_token() -> Iterator[Path]:
    """A fresh token for the local Ray, in a file only this user can read, in a directory only this user
    can enter; Ray's processes find it through RAY_AUTH_TOKEN_PATH. Removed at the end.

    Ray's own default (~/.ray/auth_token) is written with mode 0644: on a host whose home directories
    others can read, anyone could use it to run code through the sweep's Ray, which listens beyond loopback.
    """
    directory = Path(tempfile.mkdtemp(prefix="lenet-ray-"))  # mode 0700
    path = directory / "auth_token"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32))
    try:
        with restored_environment(AUTH_ENV):
            os.environ.pop("RAY_AUTH_TOKEN", None)  # a token in the environment would win over the file
            os.environ.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(path))  # never "disabled"
            yield path
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@contextlib.contextmanager
def restored_environment(names: tuple[str, ...]) -> Iterator[None]:
    """The environment variables `names` as they were before, whatever was set or removed meanwhile."""
    saved = {k: os.environ.get(k) for k in names}
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _quiet() -> None:
    """Keep Ray's and Tune's own chatter off the driver's screen (a user's own settings win); it stays in
    Ray's logs and the trial directories."""
    # A retried trial's traceback; Progress prints one line instead ("trial N retried").
    os.environ.setdefault("TUNE_PRINT_ALL_TRIAL_ERRORS", "0")
    # Tune's own tables and warnings would drown lenet's progress lines.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # Tune's own Ctrl-C handling stops every trial as "terminated", pending ones too: a sweep that looks
    # finished. lenet's handler (_tune) stops them as interrupted instead.
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"


def _import_ray():
    try:
        import ray
        from ray import tune
    except ImportError:
        raise SweepUnavailable(INSTALL_HINT) from None
    return ray, tune


def _resumed_data(plan: Plan, dataset: str | None, data_dir: str | None):
    """A resumed sweep's data: its registry data set read again, or the user's own named again with
    --dataset (never the path in plan.json), and in either case the data the sweep began on (its digest)."""
    from lenet.data.registry import is_user_data, shown_name

    if dataset is None and is_user_data(plan.dataset):
        raise LenetError(f"sweep {plan.name} trained on your own data ({shown_name(plan.dataset)}), which lenet reads "
                         f"only when the command line names it: add --dataset {plan.dataset}, the path it began with, "
                         "or where that data is now")  # fmt: skip
    data = _load_data({**plan.space, "dataset": dataset or plan.dataset}, data_dir)
    if data.spec.sha256 != plan.data_sha256 and (plan.data_sha256 or is_user_data(plan.dataset)):
        then = plan.data_sha256 or "not recorded (a sweep of an older lenet)"
        raise LenetError(f"{dataset or plan.dataset} is not the data sweep {plan.name} trained on: sha256 {then} "
                         f"then, {data.spec.sha256} now; resume it on the data it began with")  # fmt: skip
    return data


def _load_data(plan_space: dict[str, Any], data_dir: str | None):
    """The sweep's data, loaded once here and sent once through Ray's object store to every trial."""
    from lenet.data.load import load_dataset
    from lenet.data.registry import DEFAULT

    data = load_dataset(plan_space.get("dataset") or DEFAULT, data_dir, skip_bad=bool(plan_space.get("skip_bad")),
                        channels=plan_space.get("channels"), size=plan_space.get("size"))  # fmt: skip
    data = data.subset(plan_space["train_subset"], plan_space["test_subset"])
    if not plan_space["val_split"] < len(data.train_labels):
        raise LenetError(f"val_split {plan_space['val_split']:,} must be below the {len(data.train_labels):,} "
                         "training images of the sweep's data")  # fmt: skip
    return data


def _connect(ray, address: str | None, local_cpus: int | None, on_line) -> bool:
    """Join the cluster at `address`, or start a local Ray sized to this machine; True if lenet started it."""
    import logging

    quiet = {"log_to_driver": False, "logging_level": logging.ERROR}
    log: list[str] = []
    try:
        if address:
            with _stderr_aside(log):
                ray.init(address=address, **quiet)
            on_line(f"on the Ray cluster at {address}: {ray.cluster_resources().get('CPU', 0):g} CPUs, "
                    f"{ray.cluster_resources().get('GPU', 0):g} GPUs")  # fmt: skip
            return False
        cpus = local_cpus or os.cpu_count()
        # Ray runs its workers at niceness 15, so that its own daemons stay responsive; beside any other work
        # at the usual priority a trial then gets a few percent of a core (a 1-thread run beside a 2-thread
        # one: 368 against 9,110 images/s, BENCHMARKS.md "Trial threads"). lenet's trials compete on equal
        # terms instead; a user's own RAY_worker_niceness wins.
        os.environ.setdefault(WORKER_NICENESS, "0")
        # address="local": a Ray of lenet's own, never a cluster someone else started on this host.
        with _stderr_aside(log):
            ray.init(address="local", num_cpus=cpus, include_dashboard=False, **quiet)
    except (ConnectionError, RuntimeError, ValueError) as e:
        why = clip(str(e).strip()) or type(e).__name__
        raise LenetError(f"cannot start or reach Ray{f' at {address}' if address else ''}: {why}"
                         + (f" (Ray's own messages: {log[0]})" if log else "")) from None  # fmt: skip
    on_line(f"on a local Ray: {cpus} CPUs")
    exposed = _reachable_ports(ray)
    if exposed:
        on_line(exposed)
    return True


@contextlib.contextmanager
def _stderr_aside(log_path: list[str]) -> Iterator[None]:
    """Ray's C++ core writes to file descriptor 2 while it starts, for one "Failed to determine local IP
    via external connectivity to: 8.8.8.8:53" on every sweep where there is no route out: nothing a user
    can act on. It goes to a file instead, kept (its path put in `log_path`) only when the start fails."""
    import sys

    sys.stderr.flush()
    log = tempfile.NamedTemporaryFile("w+", prefix="lenet-ray-start-", suffix=".log", delete=False)
    log_path.append(log.name)
    saved = os.dup(2)
    os.dup2(log.fileno(), 2)
    failed = True
    try:
        yield
        failed = False
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        log.close()
        if not failed:
            os.unlink(log.name)


def _reachable_ports(ray) -> str | None:
    """One line naming the local Ray's ports that other machines can reach, where this host has interfaces
    other than loopback (None where it has not: inside a network namespace with only `lo`)."""
    others = [name for _, name in socket.if_nameindex() if name != "lo"]
    if not others:
        return None
    node = ray.nodes()[0]
    gcs = ray.get_runtime_context().gcs_address.rsplit(":", 1)[-1]
    ports = [gcs, str(node.get("NodeManagerPort", "?")), str(node.get("ObjectManagerPort", "?"))]
    return (f"note: this Ray listens on every interface ({', '.join(others[:3])}), on ports {', '.join(ports)} and "
            "one per worker, guarded by a token only you can read; to keep it in, run the sweep in a network "
            "namespace of its own: unshare --net sh -c 'ip link set lo up && exec lenet sweep ...'")  # fmt: skip


def _check_storage(ray, storage: str | None) -> None:
    """A sweep on several machines needs Tune storage that every one of them reaches; --out is the driver's."""
    nodes = sum(1 for node in ray.nodes() if node.get("Alive"))
    if nodes > 1 and storage is None:
        raise LenetError(f"this Ray cluster has {nodes} nodes, and --out is this machine's: give --storage "
                         "s3://BUCKET/PREFIX (S3-compatible storage), or --storage PATH on a disk every node "
                         "mounts at the same path")  # fmt: skip


def _tune(tune, plan: Plan, data, ended: set[int], storage: str | None, on_line) -> bool:
    """Run every trial that has not ended on Ray Tune; True if Ctrl-C stopped it first."""
    from ray.tune.stopper import Stopper

    from lenet.sweep.progress import Progress

    pending = [u for u in range(len(plan.units())) if u not in ended]
    interrupted = Flag()  # not a threading.Event: Tune pickles the stopper and callbacks into its state

    class StopOnInterrupt(Stopper):  # Ctrl-C stops every trial at once, and none is recorded as ended
        def __call__(self, trial_id, result):
            return False

        def stop_all(self):
            return interrupted.raised

    resources = {"cpu": plan.cpus_per_trial, "gpu": plan.gpus_per_trial}
    # The data once into the object store for every trial; a resumed trial's run directories likewise.
    parameters = {"plan": plan, "data": data, "carried": carried(plan, pending)}
    trainable = tune.with_resources(tune.with_parameters(run_trial, **parameters), resources)
    progress = Progress(plan, ended, interrupted, on_line)
    if plan.space.get("search") == "optuna":
        param_space, search = _optuna(plan, pending, ended, progress)
    else:
        param_space, search = _planned_space(tune, plan, pending), None
    tuner = tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(metric="val_accuracy", mode="max", scheduler=_asha(plan), search_alg=search,
                                    num_samples=len(pending) if search else 1,
                                    max_concurrent_trials=plan.space.get("max_concurrent"),
                                    reuse_actors=True,  # a worker's start-up (Python, torch, lenet) paid once, not per trial
                                    trial_dirname_creator=lambda trial: f"unit-{trial.config['unit']:04d}"),
        run_config=tune.RunConfig(
            name=_experiment_name(plan, storage), storage_path=_storage_path(plan, storage), verbose=0,
            callbacks=[progress],
            stop=StopOnInterrupt(), failure_config=tune.FailureConfig(max_failures=plan.space["max_failures"]),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
        ),
    )  # fmt: skip
    previous = signal.getsignal(signal.SIGINT)

    def on_interrupt(sig, frame) -> None:
        interrupted.raised = True
        signal.signal(signal.SIGINT, previous)  # a second Ctrl-C stops at once

    signal.signal(signal.SIGINT, on_interrupt)
    try:
        tuner.fit()
    except (tune.TuneError, RuntimeError) as e:  # Tune's own failure (storage, the cluster), not a trial's
        raise LenetError(f"Ray Tune stopped: {clip(str(e).strip()) or type(e).__name__}; finished runs are kept; "
                         f"continue with: lenet sweep --resume {plan.directory}") from None  # fmt: skip
    finally:
        signal.signal(signal.SIGINT, previous)
    return interrupted.raised


class Flag:
    raised = False


def _optuna(plan: Plan, pending: list[int], ended: set[int], progress) -> tuple[dict, Any]:
    """Tune's search space and OptunaSearch (seeded by sample_seed) for the configurations still to run."""
    from lenet.sweep.search import NumberedSearch, optuna_search, tune_space

    unfinished = [u for u in pending if plan.configurations[u] is not None]
    learnt = [(plan.configurations[u], v) for u in sorted(ended) if plan.configurations[u] is not None
              and (v := run_metric(plan.run_dir(u, plan.seeds[-1]), plan.space["metric"])) is not None]  # fmt: skip
    search = NumberedSearch(optuna_search(plan.space["sample_seed"]), plan, unfinished, learnt, progress.proposed)
    return tune_space(plan), search


def _planned_space(tune, plan: Plan, pending: list[int]) -> dict[str, Any]:
    """The planned Tune trials as Tune's search space: a grid over their numbers, each varied field resolved
    from its trial's number, so that Tune's own results (ResultGrid.get_dataframe()) carry every field."""
    units = plan.units()
    values = {u: plan.configurations[units[u].configuration] for u in pending}
    fields = {f: tune.sample_from(lambda spec, f=f: values[spec.config.unit][f]) for f in plan.varied}
    return {"unit": tune.grid_search(pending), **fields}


def _asha(plan: Plan):
    if plan.space["asha"] is None:
        return None
    from ray.tune.schedulers import ASHAScheduler

    steps = plan.space["seeds_per_trial"] * _most_epochs(plan)
    return ASHAScheduler(time_attr="step", max_t=steps, grace_period=plan.space["asha"]["grace_period"],
                         reduction_factor=plan.space["asha"]["reduction_factor"])  # fmt: skip


def _most_epochs(plan: Plan) -> int:
    """The most epochs any configuration trains: ASHA's last step counts from it."""
    varied = [max(a["values"]) for a in plan.space["axes"] if a["field"] == "epochs"]
    return max([plan.space["base"]["epochs"], *varied])


def _storage_path(plan: Plan, storage: str | None) -> str:
    """Where Tune keeps its experiments and checkpoints: the sweep directory, or a folder of --storage named
    after the sweep."""
    return plan.directory if storage is None else f"{storage.rstrip('/')}/{plan.name}"


def _experiment_name(plan: Plan, storage: str | None) -> str:
    """A new Tune experiment per session, counted in sessions.json: a resume never opens an earlier
    session's Tune state."""
    directory = Path(plan.directory)
    sessions = read_sessions(directory)
    # A sweep of before sessions.json has its first session's experiment in tune/ and no record of it.
    earlier = len(sessions) or int((directory / TUNE_DIR).exists())
    name = f"{TUNE_DIR}-resume-{earlier}" if earlier else TUNE_DIR
    write_sessions(directory, [*sessions, SessionRecord(experiment=name, storage=_storage_path(plan, storage))])
    return name
