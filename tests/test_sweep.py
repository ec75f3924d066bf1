"""`lenet sweep` on a local Ray: the table, the best recipe file, a killed driver resumed, two nodes losing one,
bad SPACE files, a trial in this process (tests/test_sweep_faults.py: Ctrl-C, ASHA, the token).

The sweeps run as a user runs them, `lenet sweep` in a subprocess, in a session of its own: every
process Ray starts for it is stopped by that session's process ids when the test ends, pass or fail.
Each runs in a network namespace of its own with only `lo` (tests/namespaces.py; Ray 2.60 also
listens on the host's address): no test traffic leaves loopback. Where no namespace can be made
those tests skip, and under CI they fail.
"""

import json
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest
import torch
from namespaces import in_loopback_namespace, network_namespace, session_pids, stop_namespace
from namespaces import stop_session
from safetensors.torch import load_file

from conftest import REPO
from sweeps import SPACE, Planted, Sweep, epochs_done, finished_sweep_dir, interfaces, listening_addresses, needs_ray
from sweeps import read_table, runs_under_way, space_file


@pytest.fixture(scope="module")
def finished_sweep(tmp_path_factory) -> Path:
    return finished_sweep_dir(tmp_path_factory)


@pytest.mark.usefixtures("ray_namespace")
@needs_ray
def test_a_sweep_writes_ranked_runs_a_table_and_a_recipe(finished_sweep):
    from lenet.runs.directory import read_run

    table = read_table(finished_sweep)
    rows = table["rows"]
    assert len(rows) == 4 and table["varied"] == ["lr", "weight_decay"] and table["val_split"] == 500
    assert (table["dataset"], table["train_subset"], table["test_subset"]) == ("fashion-mnist", 2000, 500)
    assert {r["params"]["lr"] for r in rows} == {0.005, 0.01}
    means = [r["val"]["mean"] for r in rows]
    assert means == sorted(means, reverse=True)
    for row in rows:  # every trial is an ordinary run, judged on the validation split
        run = read_run(finished_sweep / row["seeds"][0]["run"])
        assert run.config.val_split == 500 and run.config.recipe["lr"] == row["params"]["lr"]
        assert row["val"]["mean"] == run.summary.val.accuracy and len(run.metrics) == 2
        assert row["test"]["mean"] == run.summary.test.accuracy
    csv_lines = (finished_sweep / "sweep.csv").read_text().splitlines()
    assert csv_lines[0].startswith("rank,trial,lr,weight_decay,") and len(csv_lines) == 5
    assert csv_lines[1].split(",")[1] == rows[0]["trial"]
    assert (finished_sweep / "sweep.html").read_text().count("<img") == 3  # lr, weight decay, the top curves
    # Tune's own results carry every varied field (what ResultGrid.get_dataframe() reads), with the figure.
    for row in rows:
        unit = row["trial"].replace("trial-", "unit-")
        last = json.loads((finished_sweep / "tune" / unit / "result.json").read_text().splitlines()[-1])
        assert {k: last["config"][k] for k in ("lr", "weight_decay")} == row["params"]
        assert last["val_accuracy"] == row["val"]["mean"]


@pytest.mark.usefixtures("ray_namespace")
@needs_ray
def test_the_best_recipe_file_trains_to_the_same_weights(finished_sweep, fmnist, tmp_path, monkeypatch, capsys):
    import lenet.data.load
    from lenet.cli import main
    from lenet.training.recipes import load_recipe_file

    best = read_table(finished_sweep)["rows"][0]
    recipe_file = finished_sweep / "best_recipe.toml"
    assert load_recipe_file(recipe_file).lr == best["params"]["lr"]
    comments = recipe_file.read_text()
    assert "of fashion-mnist (the first 2,000 training images and the first 500 test images)" in comments
    assert "--dataset fashion-mnist --seed 0 --val-split 500 --threads 1" in comments
    subset = fmnist.subset(2000, 500)
    monkeypatch.setattr(lenet.data.load, "load_dataset", lambda *a, **k: subset)
    code = main(["train", "--recipe", str(recipe_file), "--seed", "0", "--val-split", "500", "--threads", "1",
                 "--device", "cpu", "--out", str(tmp_path), "--name", "again", "--no-report", "--no-progress"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    a = load_file(finished_sweep / best["seeds"][0]["run"] / "model.safetensors")
    b = load_file(tmp_path / "again" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    config = json.loads((tmp_path / "again" / "config.json").read_text())
    assert config["recipe_name"] == str(recipe_file) and config["recipe"]["weight_decay"] == best["params"]["weight_decay"]


def environ(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


@pytest.mark.faults
@pytest.mark.usefixtures("ray_namespace")
@needs_ray
def test_a_killed_driver_resumes_from_its_own_records_to_the_same_table(finished_sweep, tmp_path):
    """The driver is killed while a trial is between epochs; --resume reads plan.json, trials.json and the
    run directories, never Tune's pickled state (planted here: unpickling it would leave a marker), and
    the trial that was training goes on from its last completed epoch."""
    sweep = Sweep(str(space_file(tmp_path)), "--out", str(tmp_path), "--name", "killed")
    killed = tmp_path / "killed"
    try:
        sweep.wait_for(lambda: runs_under_way(killed), "a run with a completed epoch under way")
        # Mid-sweep, Ray's every process is in the sweep's own namespace, where it listens on loopback only.
        ray_processes = session_pids(sweep.proc.pid)
        assert len(ray_processes) > 3 and {network_namespace(p) for p in ray_processes} - {None} == {network_namespace(sweep.proc.pid)}
        assert network_namespace(sweep.proc.pid) != network_namespace(os.getpid()) and interfaces(sweep.proc.pid) == ["lo"]
        listening = listening_addresses(sweep.proc.pid)
        assert listening and all(address.is_loopback for address in listening), listening
        token = next(Path(e.split("=", 1)[1]) for p in ray_processes for e in environ(p) if e.startswith("RAY_AUTH_TOKEN_PATH="))
        os.kill(sweep.proc.pid, signal.SIGKILL)  # the driver only; its local Ray goes with it
        sweep.proc.wait()
    finally:
        stop_session(sweep.proc.pid)
    # A SIGKILLed driver cannot remove its token (0600, in a 0700 directory, for a Ray now gone): the test does.
    assert token.stat().st_mode & 0o777 == 0o600
    shutil.rmtree(token.parent)
    assert not (killed / "sweep.json").exists()
    under_way = {p: epochs_done(p) for p in runs_under_way(killed)}
    assert under_way
    done = {p: p.stat().st_mtime_ns for p in killed.glob("trial-*/model.safetensors") if (p.parent / "summary.json").exists()}
    marker = tmp_path / "unpickled"
    for state in killed.glob("tune/*.pkl"):  # what Tuner.restore would unpickle
        state.write_bytes(pickle.dumps(Planted(marker)))
    out, _ = Sweep("--resume", str(killed)).wait()
    lines = out.splitlines()
    assert f"from its own records (plan.json, trials.json, run directories; no Tune state): {len(done)} of 4 trials done" in lines[0]
    first_progress = next(line for line in lines if line.startswith("trials "))
    assert first_progress.startswith(f"trials {len(done)}/4 done")  # the resume's first lines agree
    assert not marker.exists() and list(killed.glob("tune/*.pkl"))
    assert all(p.stat().st_mtime_ns == t for p, t in done.items())  # a finished trial is never trained again
    for run_dir, epochs in under_way.items():  # went on after its last completed epoch, in the new Tune experiment
        unit = run_dir.name.replace("trial-", "unit-")
        reports = [json.loads(line) for line in (killed / "tune-resume-1" / unit / "result.json").read_text().splitlines()]
        assert reports[0]["epoch"] == epochs + 1, (run_dir, reports)
    whole, resumed = read_table(finished_sweep), read_table(killed)
    assert resumed["rows"] == whole["rows"] and resumed["sweep"] == "killed" and resumed["partial"] is False
    # Resumed again, with every trial ended: nothing is trained, Ray is not even started, the table is written again.
    (killed / "sweep.json").unlink()
    out, _ = Sweep("--resume", str(killed)).wait()
    assert "4 of 4 trials done" in out.splitlines()[0] and "local Ray" not in out
    assert read_table(killed)["rows"] == whole["rows"]


@pytest.mark.usefixtures("ray_namespace")
@needs_ray
def test_a_sweep_directory_of_an_older_lenet_resumes_to_the_same_table(finished_sweep, tmp_path):
    """A sweep written before `dataset`, `search` and `max_concurrent` were settings, and before trials.json
    and sessions.json: --resume reads it as it was meant (Fashion-MNIST, lenet's own draws), trains only the
    configuration it lacks, and writes the table the sweep wrote."""
    old = tmp_path / "old"
    shutil.copytree(finished_sweep, old)
    plan = json.loads((old / "plan.json").read_text())
    for key in ("dataset", "search", "max_concurrent"):
        del plan["space"][key]
    (old / "plan.json").write_text(json.dumps(plan))
    for name in ("trials.json", "sessions.json", "sweep.json", "sweep.csv", "best_recipe.toml"):
        (old / name).unlink()
    lacking = read_table(finished_sweep)["rows"][-1]["trial"]
    shutil.rmtree(old / lacking)
    kept = {p: p.stat().st_mtime_ns for p in old.glob("trial-*/model.safetensors")}
    out, _ = Sweep("--resume", str(old)).wait()
    assert "3 of 4 trials done" in out.splitlines()[0]
    assert (old / lacking / "summary.json").exists() and (old / "tune-resume-1").is_dir()
    assert all(p.stat().st_mtime_ns == t for p, t in kept.items())  # the finished ones were not trained again
    assert read_table(old)["rows"] == read_table(finished_sweep)["rows"] and (old / "best_recipe.toml").exists()


@pytest.mark.faults
@pytest.mark.usefixtures("ray_namespace")
@needs_ray
def test_a_sweep_on_two_nodes_loses_nothing_when_a_node_dies(finished_sweep, tmp_path):
    """A head, a second node and the driver in one loopback-only namespace (tests/cluster_sweep.py); the
    second node's raylet and workers are killed while a trial trains there: every trial still ends with
    the weights of the uninterrupted sweep, and the killed trial went on from its last completed epoch."""
    command = [sys.executable, str(REPO / "tests" / "cluster_sweep.py"), str(space_file(tmp_path)), str(tmp_path), "two"]
    proc = subprocess.Popen(in_loopback_namespace(command), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)  # fmt: skip
    namespace = network_namespace(proc.pid)
    while namespace == network_namespace(os.getpid()) and proc.poll() is None:  # until unshare has made it
        time.sleep(0.01)
        namespace = network_namespace(proc.pid)
    try:
        out, err = proc.communicate(timeout=170)  # the script gives up on the sweep after 140 s
    finally:
        proc.kill()
        if namespace not in (None, network_namespace(os.getpid())):
            stop_namespace(namespace)
    assert proc.returncode == 0, err[-3000:]
    result = json.loads(out.splitlines()[-1])
    cluster = result["cluster_line"] or ""
    assert result["driver_exit"] == 0 and "on the Ray cluster at 127.0.0.1:6379: 2 CPUs" in cluster, result
    # Quiet: one line for the retry, no traceback of Ray's, no network_util chatter on the driver's screen.
    assert f"trial {int(result['killed']['run'].split('-')[1])} retried" in result["stdout"], result["stdout"]
    assert "Traceback" not in result["stderr"] and "network_util" not in result["stderr"], result["stderr"]
    killed = result["killed"]
    assert killed, f"no trial trained on the second node: {result}"
    # Ray titles a trial's worker "ray::ImplicitFunc.train" only while a call to train() is under way.
    trial_workers = [c for c in killed["processes"].values() if c.startswith("ray::ImplicitFunc")]
    assert killed["raylet"] and trial_workers and killed["epochs_done"] >= 1
    whole, two = read_table(finished_sweep), read_table(tmp_path / "two")
    assert two["rows"] == whole["rows"]
    for row in whole["rows"]:
        a = load_file(finished_sweep / row["seeds"][0]["run"] / "model.safetensors")
        b = load_file(tmp_path / "two" / row["seeds"][0]["run"] / "model.safetensors")
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), row["trial"]
    # Ray Tune retried the killed trial elsewhere, and the retry began after the epochs already done.
    tune_trial = tmp_path / "two" / "tune" / killed["run"].replace("trial-", "unit-")
    assert (tune_trial / "error.txt").read_text().startswith("Failure # 1")
    reports = [json.loads(line) for line in (tune_trial / "result.json").read_text().splitlines()]
    retried = [r["epoch"] for r in reports if str(r["pid"]) not in killed["processes"]]
    assert retried and retried[0] == killed["epochs_done"] + 1 and retried[-1] == 2


@pytest.mark.parametrize(
    "change, message",
    [
        ("[vary]\nlr = [0.005, 0.01]\nweight_decay = { loguniform = [0.001, 0.1] }\nmomentum_x = [1]",
         "[vary] momentum_x: unknown recipe field"),
        ("[vary]\nlr = []", "[vary] lr: the list is empty"),
        ("[vary]\nlr = { uniform = [0.1, 0.01] }", "uniform takes [low, high] with low < high"),
        ("[vary]\nbatch_size = [64, \"128\"]", "batch-size must be a whole number, not '128'"),
        ("[vary]\nlr = [-1.0]", "[vary] lr: lr must be > 0, not -1.0"),
        ("[vary]\nlr = { loguniform = [0.0, 0.1] }", "lr must be > 0, not 0.0"),
        ("[vary]\nweight_decay = { loguniform = [0.0, 0.1] }", "loguniform needs a positive low end"),
        ("[vary]\nmodel = { uniform = [1, 2] }", "model must be text"),
        ("[vary]\nflip = { choice = [] }", "the list is empty"),
        ("metric = \"last\"", "metric must be one of 'final', 'best'"),
        ("seeds = 0", "seeds must be >= 1, not 0"),
        ("budget = 3", "unknown setting 'budget'"),
        ("[vary]\nlr = { uniform = [0.001, 0.1] }", "needs trials = N"),
        ("", "nothing to sweep; add a [vary] table, or seeds = N (N > 1) for a many-seed study"),
        ("seeds = 1\n[recipe]\nepochs = 1", "nothing to sweep"),
        ("search = \"bayes\"\n[vary]\nlr = [0.01]", "search must be one of 'random', 'optuna', not 'bayes'"),
        ("search = \"optuna\"\ntrials = 2\nseeds = 2\n[vary]\nlr = [0.01, 0.02]", "seeds_per_trial must be 2 (seeds)"),
        ("search = \"optuna\"\n[vary]\nlr = [0.01, 0.02]", "needs fields to vary ([vary]) and trials = N"),
        ("search = \"optuna\"\ntrials = 2\n[vary]\nlr = { uniform = [-1.0, 0.1] }", "lr must be > 0, not -1.0"),
    ],
)  # fmt: skip
def test_a_bad_space_file_is_one_line(tmp_path, capsys, change, message):
    from lenet.cli import main

    space = tmp_path / "bad.toml"
    space.write_text(f'base = "default"\n{change}\n')
    assert main(["sweep", str(space), "--out", str(tmp_path / "runs")]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and message in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists()  # nothing started


def test_more_trials_than_the_grid_holds_is_one_line(tmp_path, capsys):
    from lenet.cli import main

    space = space_file(tmp_path, 'trials = 7\n[vary]\nlr = [0.005, 0.01]\nshift = [0, 1, 2]\n')
    assert main(["sweep", str(space)]) == 1
    assert capsys.readouterr().err.strip().endswith("7 trials, but the grid holds only 6 configurations")
    with pytest.raises(SystemExit) as exit_:
        main(["sweep", str(space), "--trials", "3", "--epochs", "0"])
    assert exit_.value.code == 2  # a flag out of range: a usage error


def test_flags_override_the_space_file(tmp_path):
    from lenet.sweep.space import Options, configurations, read_space

    space = read_space(space_file(tmp_path), Options(trials=6, seeds=3, val_split=700, epochs=1))
    assert (space.trials, space.seeds, space.val_split, space.base.epochs) == (6, 3, 700, 1)
    chosen = configurations(space)
    assert [c["lr"] for c in chosen] == [0.005, 0.01] * 3  # the grid in turn, the draws afresh
    assert all(0.001 <= c["weight_decay"] <= 0.1 for c in chosen) and len({c["weight_decay"] for c in chosen}) == 6
    assert configurations(space) == chosen  # a plan is reproducible


def test_a_space_names_its_data_set_and_the_flag_overrides_it(tmp_path):
    from lenet.sweep.space import Options, read_space

    space = space_file(tmp_path, SPACE.replace('base = "default"', 'base = "default"\ndataset = "mnist"'))
    assert read_space(space).dataset == "mnist" and read_space(space, Options(dataset="kmnist")).dataset == "kmnist"
    plan = plan_of('dataset = "csv:digits.csv"\nseeds = 2\n[data]\ntrain_subset = 300\n', tmp_path, "data")
    assert plan.dataset == "csv:digits.csv" and plan.data_note() == "csv:digits.csv (the first 300 training images)"


def test_a_bad_data_set_is_one_line_before_ray_starts(tmp_path, capsys):
    from lenet.cli import main

    with pytest.raises(SystemExit) as usage:  # a usage error, as argparse's own: exit 2
        main(["sweep", str(space_file(tmp_path)), "--dataset", "nonsense", "--out", str(tmp_path / "runs")])
    assert usage.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nonsense" in err and not (tmp_path / "runs").exists()


def test_recipe_files_are_checked_like_the_built_in_recipes(tmp_path, capsys):
    from lenet.cli import main

    for text, message in [("lr = 0.02\nfoo = 1\n", "unknown recipe field 'foo'"), ("flip = 1\n", "flip must be true or false"),
                          ("shift = 9\n", "shift must be >= 0 and <= 8, not 9"), ("lr = ", "not valid TOML")]:  # fmt: skip
        path = tmp_path / "r.toml"
        path.write_text(text)
        assert main(["train", "--recipe", str(path), "--out", str(tmp_path / "runs")]) == 1
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and message in err
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--recipe", "nonsense"])
    assert exit_.value.code == 2


def test_training_and_the_library_never_import_ray():
    code = ("import sys, lenet, lenet.training.loop, lenet.cli, lenet.inference.predict, lenet.insight.report, "
            "lenet.inference.export, lenet.sweep.space, lenet.sweep.plan, lenet.sweep.table, lenet.sweep.page\n"
            "lenet.cli.build_parser()\n"
            "assert not [m for m in sys.modules if m == 'ray' or m.startswith('ray.')], 'ray imported'")  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr


def test_without_ray_the_sweep_says_how_to_get_it(tmp_path):
    code = ("import sys; sys.modules['ray'] = None\n"  # as if Ray were not installed
            "from lenet.cli import main; sys.exit(main(sys.argv[1:]))")  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", code, "sweep", str(space_file(tmp_path)), "--out", str(tmp_path)],
                          capture_output=True, text=True, cwd=REPO)  # fmt: skip
    assert proc.returncode == 1 and proc.stderr.strip() == (
        "lenet sweep: error: lenet sweep needs Ray: pip install 'lenet[sweep]' (Ray Tune 2.60)"
    )


def plan_of(text: str, out: Path, name: str):
    """The plan of a space given as text, with a 100-image validation split, made in `out`."""
    from lenet.sweep.plan import make_plan
    from lenet.sweep.space import Options, parse_space

    space = parse_space(__import__("tomllib").loads(text), "test space", Options(val_split=100))
    return make_plan(space, Options(out=str(out), name=name), text)


class Stopped(Exception):
    """What Tune does to a function trainable it stops: nothing after the report runs."""


def run_trial_here(plan, data, monkeypatch, stop_at_step: int | None = None, checkpoint: Path | None = None) -> list[dict]:
    """The plan's first trial in this process, on one thread as a trial runs, with Tune's part played here:
    each report's checkpoint goes into the sweep directory as the driver puts it (carry.unpack), a report
    at `stop_at_step` stops the trial as ASHA would, and `checkpoint` is what a retry gets from
    tune.get_checkpoint. Returns the reported metrics (so far, on a stop: see `reports` of Stopped)."""
    from ray import tune

    from lenet.sweep.carry import unpack
    from lenet.sweep.trainable import run_trial

    reports = []

    def report(metrics, checkpoint=None):
        reports.append(metrics)
        unpack(plan, 0, Path(checkpoint.path), Path(plan.directory))
        if metrics["step"] == stop_at_step:
            raise Stopped(reports)

    monkeypatch.setattr(tune, "report", report)
    saved = None if checkpoint is None else tune.Checkpoint.from_directory(str(checkpoint))
    monkeypatch.setattr(tune, "get_checkpoint", lambda: saved)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_trial({"unit": 0}, plan, data)
    finally:
        torch.set_num_threads(threads)
    return reports


@needs_ray
def test_a_diverging_trial_is_recorded_as_failed_and_the_table_goes_on(tmp_path, fmnist, monkeypatch):
    from lenet.sweep.table import table_rows

    text = '[recipe]\nmodel = "lenet_bn"\nepochs = 1\noptimizer = "sgd"\nschedule = "constant"\n[vary]\nlr = [1e9]\n'
    plan = plan_of(text, tmp_path, "nan")
    (reported,) = run_trial_here(plan, fmnist.subset(600, 100), monkeypatch)
    assert reported["val_accuracy"] != reported["val_accuracy"]  # NaN: ASHA passes over it
    (row,) = table_rows(plan)
    assert row["finished"] == 0 and "val" not in row
    assert row["seeds"][0]["status"] == "failed" and "loss became nan in epoch 1" in row["seeds"][0]["message"]
    assert (tmp_path / "nan" / "trial-0000" / "config.json").exists()  # the run directory reached the driver


@needs_ray
def test_a_stop_at_a_runs_last_report_never_cuts_its_final_figures(tmp_path, fmnist, monkeypatch):
    """ASHA may stop a trial at any report; at a run's last epoch that must not lose its summary.json
    (it did: the last epoch was reported before the final figures were computed)."""
    from lenet.sweep.table import table_rows

    plan = plan_of('seeds = 2\nseeds_per_trial = 2\n[recipe]\nmodel = "lenet_bn"\nepochs = 2\n', tmp_path, "stop")
    with pytest.raises(Stopped) as stop:  # ASHA at a rung of 2 steps: the end of seed 0's two epochs
        run_trial_here(plan, fmnist.subset(600, 100), monkeypatch, stop_at_step=2)
    reports = stop.value.args[0]
    summary = json.loads((plan.run_dir(0, 0) / "summary.json").read_text())
    assert [r["step"] for r in reports] == [1, 2]
    assert reports[-1]["val_accuracy"] == summary["val"]["accuracy"]  # the finished model's figure, every view
    assert not plan.run_dir(0, 1).exists()  # the stopped trial's second seed never started
    (row,) = table_rows(plan)
    assert row["seeds"][0]["status"] == "done" and row["seeds"][0]["val"] == summary["val"]["accuracy"]


@needs_ray
def test_a_retried_trial_goes_on_from_its_checkpoint_alone(tmp_path, fmnist, monkeypatch):
    """A retry finds its runs in Tune's checkpoint alone (the sweep directory may be another machine's): it
    trains only the epochs after the checkpoint's, to the weights of a trial never interrupted."""
    text = '[recipe]\nmodel = "lenet_bn"\nepochs = 3\n[vary]\nlr = [0.01]\n'
    data = fmnist.subset(600, 100)
    whole = plan_of(text, tmp_path / "a", "whole")
    run_trial_here(whole, data, monkeypatch)
    cut = plan_of(text, tmp_path / "b", "cut")
    with pytest.raises(Stopped):  # the node is lost right after epoch 1's report
        run_trial_here(cut, data, monkeypatch, stop_at_step=1)
    checkpoint = tmp_path / "checkpoint"
    checkpoint.mkdir()
    cut.run_dir(0, 0).rename(checkpoint / "trial-0000")  # the driver's copy gone: only Tune's checkpoint is left
    reports = run_trial_here(cut, data, monkeypatch, checkpoint=checkpoint)
    assert [r["epoch"] for r in reports] == [2, 3]
    a, b = load_file(whole.run_dir(0, 0) / "model.safetensors"), load_file(cut.run_dir(0, 0) / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


OPTUNA_SPACE = """
search = "optuna"
trials = 5
[recipe]
epochs = 1
[vary]
lr = { loguniform = [0.001, 0.1] }
batch_size = [64, 128]
shift = { uniform = [0, 3] }
"""


def optuna_proposals(plan, count: int, seed: int = 0) -> tuple[list, list]:
    """What lenet's NumberedSearch over a seeded OptunaSearch proposes for `plan`, asked `count` times in a row."""
    from lenet.sweep.search import NumberedSearch, optuna_search, tune_space

    recorded = []
    search = NumberedSearch(optuna_search(seed), plan, [], [], lambda number, values: recorded.append((number, values)))
    search.set_search_properties("val_accuracy", "max", tune_space(plan))
    return [search.suggest(f"trial-{i}") for i in range(count)], recorded


@needs_ray
def test_optuna_proposes_numbered_configurations_reproducibly_within_the_space(tmp_path):
    __import__("optuna")  # lenet[sweep] installs it; missing, this test fails rather than skips

    first, recorded = optuna_proposals(plan_of(OPTUNA_SPACE, tmp_path, "a"), 6)
    again, _ = optuna_proposals(plan_of(OPTUNA_SPACE, tmp_path, "b"), 6)
    other, _ = optuna_proposals(plan_of(OPTUNA_SPACE, tmp_path, "c"), 5, seed=1)
    assert first == again and first[:5] != other and first[5] == "FINISHED"  # the search algorithm's own seed decides
    assert [c["unit"] for c in first[:5]] == [0, 1, 2, 3, 4] == [n for n, _ in recorded]
    for config in first[:5]:
        assert 0.001 <= config["lr"] <= 0.1 and config["batch_size"] in (64, 128) and config["shift"] in range(4)
        assert type(config["shift"]) is int and type(config["batch_size"]) is int
    assert len({c["lr"] for c in first[:5]}) == 5



def test_the_default_sweep_name_is_what_the_help_says(tmp_path, capsys):
    """No --name: the SPACE file's `name` key, else sweep-Ntrials-YYYYMMDD-HHMMSS; --help says the same."""
    import re

    from lenet.cli import build_parser
    from lenet.sweep.plan import make_plan
    from lenet.sweep.space import Options, parse_space

    options = Options(out=str(tmp_path))
    unnamed = parse_space({"vary": {"lr": [0.01, 0.02]}}, "space")
    assert re.fullmatch(r"sweep-2trials-\d{8}-\d{6}", Path(make_plan(unnamed, options, "").directory).name)
    named = parse_space({"name": "lr-study", "vary": {"lr": [0.01, 0.02]}}, "space")
    assert Path(make_plan(named, options, "").directory).name == "lr-study"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["sweep", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "default: the SPACE file's name key, else sweep-Ntrials-YYYYMMDD-HHMMSS" in help_text


# --- what a sweep's tables and the driver say and leave behind, without Ray ------------------------

ASHA_TWO = '[recipe]\nmodel = "lenet_bn"\nepochs = 2\n[vary]\nlr = [0.005, 0.01]\n[asha]\ngrace_period = 1\n'


def test_an_errored_trial_reads_error_in_every_table_and_resume_tries_it_again(tmp_path):
    """An ASHA sweep that ran to its end called an errored trial "stopped early", though trials.json said
    "error" and --resume would train it again."""
    import csv

    from lenet.sweep.plan import ended_units, record_trial
    from lenet.sweep.table import finish

    plan = plan_of(ASHA_TWO, tmp_path, "errored")
    record_trial(plan, 0, "error")
    record_trial(plan, 1, "stopped early")
    lines = []
    result = finish(plan, 1.0, lines.append)
    expected = {"trial-0000": "1 error", "trial-0001": "1 stopped early"}
    assert {r["trial"]: r["seeds"][0]["status"] for r in result.rows} == {"trial-0000": "error", "trial-0001": "stopped early"}
    table = json.loads((tmp_path / "errored" / "sweep.json").read_text())
    assert {r["trial"]: r["seeds"][0]["status"] for r in table["rows"]} == {"trial-0000": "error", "trial-0001": "stopped early"}
    rows = list(csv.DictReader((tmp_path / "errored" / "sweep.csv").read_text().splitlines()))
    assert {r["trial"]: r["status"] for r in rows} == expected
    for trial, status in expected.items():
        assert any(trial in line and line.endswith(f"  {status}") for line in lines), lines
    if result.page is not None:
        page = result.page.read_text()
        assert "1 error" in page and "1 stopped early" in page
    assert ended_units(plan) == {1}  # the errored trial is not ended: --resume trains it again
def test_a_partial_session_removes_an_earlier_best_recipe(tmp_path):
    """A resume cut short writes no best recipe: the earlier session's must not stay beside its partial table."""
    from lenet.sweep.table import BEST_RECIPE, finish

    plan = plan_of(ASHA_TWO, tmp_path, "cut")
    stale = tmp_path / "cut" / BEST_RECIPE
    stale.write_text("# the best configuration of an earlier session\n")
    lines = []
    result = finish(plan, 1.0, lines.append, partial=True)
    assert result.best_recipe is None and not stale.exists()
    assert "no best recipe: the sweep is unfinished" in lines
class FakeRay:
    """As much of Ray as the driver touches before Tune: an init that may fail, and a record of shutdowns."""

    def __init__(self, init_fails: bool = False):
        self.init_fails, self.initialized, self.shutdowns = init_fails, False, 0

    def init(self, **settings):
        if self.init_fails:
            raise RuntimeError("the raylet did not start")
        self.initialized = True

    def is_initialized(self):
        return self.initialized

    def shutdown(self):
        self.shutdowns += 1
        self.initialized = False

    def nodes(self):
        return []


def sweep_with_fake_ray(tmp_path, monkeypatch, ray: FakeRay, tune=None):
    """run_sweep of a small space with `ray` for Ray, no data loaded, and `tune` (if given) for driver._tune."""
    from lenet.sweep import driver
    from lenet.sweep.space import Options

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(driver, "_import_ray", lambda: (ray, None))
    # What make_plan reads of the data, and its size, which every configuration is checked against before Ray starts
    no_data = types.SimpleNamespace(spec=types.SimpleNamespace(sha256=""), train_labels=range(60_000))
    monkeypatch.setattr(driver, "_load_data", lambda space, data_dir: no_data)
    if tune is not None:
        monkeypatch.setattr(driver, "_tune", tune)
    space = tmp_path / "space.toml"
    space.write_text(ASHA_TWO)
    return driver.run_sweep(str(space), Options(out=str(tmp_path), name="fake", local_cpus=1), on_line=lambda line: None)


@pytest.mark.parametrize("fails", ["in ray.init", "after ray.init"])
def test_ray_is_shut_down_when_connecting_fails(tmp_path, monkeypatch, fails):
    from lenet.core.errors import LenetError
    from lenet.sweep import driver

    ray = FakeRay(init_fails=fails == "in ray.init")
    if fails == "after ray.init":

        def unreadable(ray):
            raise RuntimeError("the local Ray's node table is unreadable")

        monkeypatch.setattr(driver, "_reachable_ports", unreadable)
    with pytest.raises(LenetError if fails == "in ray.init" else RuntimeError) as failed:
        sweep_with_fake_ray(tmp_path, monkeypatch, ray)
    assert ray.shutdowns == 1  # Ray's processes, started or half started, end with the sweep
    kept = re.search(r"Ray's own messages: (\S+)\)", str(failed.value))  # the start-up log a failed start keeps
    if kept:
        Path(kept.group(1)).unlink()
def test_the_sweeps_ray_and_tune_settings_leave_the_process_environment_as_it_was(tmp_path, monkeypatch):
    """A library caller's process keeps no TUNE_* or RAY_worker_niceness of the sweep's once run_sweep returns."""
    from lenet.sweep import driver

    quiet = ("TUNE_PRINT_ALL_TRIAL_ERRORS", "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "RAY_AIR_NEW_OUTPUT")
    names = (*quiet, "TUNE_DISABLE_SIGINT_HANDLER", "RAY_worker_niceness", *driver.AUTH_ENV)
    for name in names:
        monkeypatch.delenv(name, raising=False)
    during = {}

    def tune(*args):
        during.update({name: os.environ.get(name) for name in names if name in os.environ})
        return False

    monkeypatch.setattr(driver, "_reachable_ports", lambda ray: None)
    ray = FakeRay()
    sweep_with_fake_ray(tmp_path, monkeypatch, ray, tune)
    left = {name: os.environ[name] for name in names if name in os.environ}
    assert left == {}, left
    assert {name: during[name] for name in names[:5]} == {**dict.fromkeys(quiet, "0"), "TUNE_DISABLE_SIGINT_HANDLER": "1",
                                                          "RAY_worker_niceness": "0"}  # set for the sweep itself
    assert during["RAY_AUTH_MODE"] == "token" and ray.shutdowns == 1
def test_a_checkpoint_directory_holding_a_link_is_refused_not_followed(tmp_path):
    """copytree follows links: a run directory in a checkpoint linking to a file of the driver's machine
    would have copied that file into the sweep directory (the tar path's filter="data" refuses such links)."""
    from lenet.core.errors import LenetError
    from lenet.sweep.carry import unpack

    plan = plan_of('[recipe]\nepochs = 1\n[vary]\nlr = [0.01]\n', tmp_path / "out", "links")
    secret = tmp_path / "secret.txt"
    secret.write_text("the driver's own file\n")
    checkpoint = tmp_path / "checkpoint"
    (checkpoint / "trial-0000").mkdir(parents=True)
    (checkpoint / "trial-0000" / "metrics.csv").write_text("epoch\n1\n")
    (checkpoint / "trial-0000" / "config.json").symlink_to(secret)
    with pytest.raises(LenetError) as refused:
        unpack(plan, 0, checkpoint, Path(plan.directory))
    message = str(refused.value)
    assert "\n" not in message and "config.json: a link" in message, message
    assert not plan.run_dir(0, 0).exists() and not any(Path(plan.directory).glob(".trial-0000.*"))


# --- issue 38, item 6: a sweep on your own data as on Fashion-MNIST ---------------------------------


def test_a_sweep_whose_every_run_failed_writes_its_table_then_fails_and_resume_retries_them(tmp_path):
    """Both trials "1 failed", then "no best recipe" and exit 0; --resume said "2 of 2 trials done" and
    retried nothing."""
    from lenet.core.errors import LenetError
    from lenet.runs.sweeps import write_failed
    from lenet.sweep.carry import carried
    from lenet.sweep.plan import ended_units, record_trial
    from lenet.sweep.table import TABLE_CSV, finish

    plan = plan_of('[recipe]\nepochs = 1\n[vary]\nlr = [0.005, 0.01]\n', tmp_path, "failed")
    for unit in range(2):
        plan.run_dir(unit, 0).mkdir(parents=True)
        write_failed(plan.run_dir(unit, 0), LenetError("onecycle's warm-up is 20% of 5 steps, exactly one step"))
        record_trial(plan, unit, "finished")  # as Tune records a trial whose run failed: it returned
    lines = []
    with pytest.raises(LenetError, match=r"^every trial failed: trial-0000 seed 0: onecycle's warm-up is 20% of 5 "
                                         r"steps, exactly one step \(and 1 more\); fix the cause, then lenet sweep "
                                         r"--resume .*failed trains them again$"):  # fmt: skip
        finish(plan, 1.0, lines.append)
    assert (tmp_path / "failed" / TABLE_CSV).is_file() and any("no best recipe" in line for line in lines)  # table first
    assert ended_units(plan) == set()  # --resume trains both again
    assert carried(plan, [0, 1]) == {}  # from their start: a failed run directory is not handed to the trial


def test_a_sweep_with_one_run_finished_is_no_failure(tmp_path):
    from lenet.core.errors import LenetError
    from lenet.runs.sweeps import write_failed
    from lenet.sweep.plan import ended_units, record_trial
    from lenet.sweep.table import check_not_all_failed, table_rows

    plan = plan_of(ASHA_TWO, tmp_path, "one")
    plan.run_dir(0, 0).mkdir(parents=True)
    write_failed(plan.run_dir(0, 0), LenetError("loss became nan in epoch 1"))
    record_trial(plan, 0, "finished")
    record_trial(plan, 1, "stopped early")
    check_not_all_failed(plan, table_rows(plan))  # one trial stopped early, not failed: the sweep did its job
    assert ended_units(plan) == {1}


@needs_ray
def test_a_value_lenet_train_refuses_is_refused_for_its_trial_before_ray_starts(tmp_path, capsys, fmnist):
    """docs/sweeps.md promised it; every trial failed in Ray instead, one step of warm-up each."""
    from dataclasses import replace

    from lenet import TrainConfig, get_recipe
    from lenet.cli import main
    from lenet.core.errors import LenetError
    from lenet.training.loop import check_before_training

    text = 'val_split = 100\n[data]\ntrain_subset = 300\n[recipe]\nepochs = 1\nwarmup = 0.5\n[vary]\nbatch_size = [64, 128]\n'
    assert main(["sweep", str(space_file(tmp_path, text)), "--out", str(tmp_path / "runs")]) == 1
    out, err = capsys.readouterr()
    assert err.strip() == ("lenet sweep: error: trial-0001 (batch_size=128): onecycle's warm-up is 50% of 2 steps, "
                           "exactly one step, which PyTorch's OneCycleLR cannot do; train more steps or use --schedule "
                           "constant")  # fmt: skip
    assert "Ray" not in out and not (tmp_path / "runs").exists()  # Ray never started, nothing was made
    recipe = replace(get_recipe("default"), epochs=1, warmup=0.5, batch_size=128)
    with pytest.raises(LenetError, match="exactly one step"):  # lenet train's own check, the same one
        check_before_training(TrainConfig(recipe=recipe, val_split=100, device="cpu", save=False), fmnist.subset(300, 10))


def test_skip_bad_reaches_the_sweeps_data_and_its_plan(tmp_path):
    from conftest import make_folder
    from lenet.cli import build_parser
    from lenet.core.errors import DataError
    from lenet.sweep.driver import _load_data
    from lenet.sweep.plan import read_plan
    from lenet.sweep.space import Options, parse_space

    root = make_folder(tmp_path / "shapes", {"a": 6, "b": 6})
    (root / "a" / "broken.png").write_bytes(b"not an image")
    space = {"dataset": f"folder:{root}", "train_subset": None, "test_subset": None, "val_split": 2}
    with pytest.raises(DataError, match="broken.png"):
        _load_data(space, None)
    assert any("broken.png" in line for line in _load_data({**space, "skip_bad": True}, None).skipped)
    assert parse_space({"seeds": 2, "skip_bad": True}, "s").skip_bad is True
    assert parse_space({"seeds": 2}, "s", Options(skip_bad=True)).skip_bad is True
    assert build_parser().parse_args(["sweep", "s.toml", "--skip-bad"]).skip_bad is True
    plan = plan_of('skip_bad = true\nseeds = 2\n', tmp_path, "skipping")
    assert read_plan(plan.directory).space["skip_bad"] is True
    assert plan_of('seeds = 2\n', tmp_path, "plain").space["skip_bad"] is False
