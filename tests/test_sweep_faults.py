"""`lenet sweep` under faults and guards, on a local Ray in a network namespace of its own: Ctrl-C, ASHA
under real Ray Tune, the local Ray's token. (tests/sweeps.py: the helpers; tests/test_sweep.py: the rest.)"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from namespaces import cmdline, session_pids, stop_session
from sweeps import Sweep, finished_sweep_dir, needs_ray, read_table, runs_under_way, space_file

pytestmark = pytest.mark.faults  # minutes of Ray: make fault-test, which CI runs beside make test


@pytest.fixture(scope="module")
def finished_sweep(tmp_path_factory) -> Path:
    return finished_sweep_dir(tmp_path_factory)


@pytest.mark.usefixtures("ray_namespace")
@needs_ray
def test_ctrl_c_stops_the_sweep_with_a_partial_table_and_resume_finishes_it(finished_sweep, tmp_path):
    """SIGINT, as a terminal's Ctrl-C sends it: exit 130, how to go on, a table marked partial in every form,
    no best recipe; then --resume ends with the table of the uninterrupted sweep."""
    sweep = Sweep(str(space_file(tmp_path)), "--out", str(tmp_path), "--name", "stopped")
    stopped = tmp_path / "stopped"
    sweep.wait_for(lambda: runs_under_way(stopped), "a run with a completed epoch under way")
    os.kill(sweep.proc.pid, signal.SIGINT)
    out, err = sweep.wait(code=130)
    assert err.strip().splitlines()[-1] == f"lenet sweep: interrupted; finished runs and completed epochs are kept; " \
        f"continue with: lenet sweep --resume {stopped}"
    assert not (stopped / "best_recipe.toml").exists() and "no best recipe: the sweep is unfinished" in out
    table = read_table(stopped)
    assert table["partial"] is True and any(r["finished"] == 0 for r in table["rows"])
    assert (stopped / "sweep.csv").read_text().startswith("# PARTIAL: the sweep was interrupted")
    page = (stopped / "sweep.html").read_text()
    assert "<title>lenet sweep stopped (partial)</title>" in page and "PARTIAL: the sweep was interrupted" in page
    assert "trials 4/4 done" not in out  # no line counted the stopped trials as done
    out, _ = Sweep("--resume", str(stopped)).wait()
    assert read_table(stopped)["rows"] == read_table(finished_sweep)["rows"]
    assert (stopped / "best_recipe.toml").exists() and read_table(stopped)["partial"] is False


# 3 learning rates, seeds 0 and 1 trained one after the other in one trial, ASHA's one rung at the end of seed 0.
ASHA_SPACE = """
base = "default"
seeds = 2
seeds_per_trial = 2
val_split = 300
[recipe]
model = "lenet_bn"
epochs = 1
batch_size = 128
[vary]
lr = [0.01, 0.0001, 0.02]
[asha]
grace_period = 1
reduction_factor = 3
[data]
train_subset = 1500
test_subset = 300
"""


def asha_goes_on(first_seed_figures: list[float], reduction_factor: int = 3) -> list[bool]:
    """Which trials ASHA lets past its rung when they reach it in this order: a trial goes on unless its
    figure is below the (1 - 1/rf) quantile of those recorded before it (the first always goes on)."""
    import numpy as np

    recorded, verdicts = [], []
    for value in first_seed_figures:
        verdicts.append(not recorded or value >= np.nanpercentile(recorded, (1 - 1 / reduction_factor) * 100))
        recorded.append(value)
    return verdicts


@pytest.mark.usefixtures("ray_namespace")
@needs_ray
def test_asha_under_ray_tune_trains_a_second_seed_only_past_its_rung(tmp_path):
    """Real Ray Tune and ASHA, one trial at a time (one CPU), so trials reach the rung in order: exactly the
    trials ASHA's rule lets on trained seed 1, and a stopped trial keeps its finished seed-0 run."""
    from lenet.runs.directory import read_run

    out, _ = Sweep(str(space_file(tmp_path, ASHA_SPACE)), "--out", str(tmp_path), "--name", "asha", cpus=1).wait()
    sweep = tmp_path / "asha"
    first = [read_run(sweep / f"trial-{c:04d}" / "seed-0").summary.val.accuracy for c in range(3)]
    goes_on = asha_goes_on(first)
    assert not all(goes_on), first  # lr 0.0001 learns little in one epoch: someone is stopped
    trained_second = [(sweep / f"trial-{c:04d}" / "seed-1" / "summary.json").exists() for c in range(3)]
    assert trained_second == goes_on, (first, trained_second)
    rows = {r["trial"]: r for r in read_table(sweep)["rows"]}
    records = json.loads((sweep / "trials.json").read_text())["trials"]
    for c in range(3):
        statuses = [s["status"] for s in rows[f"trial-{c:04d}"]["seeds"]]
        assert statuses[0] in ("done", "stuck")  # stuck: finished, near chance (lr 0.0001)
        assert statuses[1] in (("done", "stuck") if goes_on[c] else ("stopped early",))
        assert records[str(c)] == ("finished" if goes_on[c] else "stopped early")
    assert "trials 3/3 done" in out


PROBE = """
import sys, ray
try:
    ray.init(address=sys.argv[1], log_to_driver=False)
except Exception as e:
    print("refused", type(e).__name__, flush=True)
else:
    print("connected", ray.cluster_resources().get("CPU"), flush=True)
"""


def probe(pid: int, address: str, env: dict[str, str], log: Path, timeout: float = 60) -> str:
    """A Ray client in `pid`'s network namespace connecting to `address` with `env`: what it printed once it
    connected or was refused (a refused client retries on; it is stopped then)."""
    command = ["nsenter", f"--net=/proc/{pid}/ns/net", sys.executable, "-c", PROBE, address]
    with log.open("w") as sink:
        proc = subprocess.Popen(command, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + timeout
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            if "InvalidAuthToken" in log.read_text() or "connected" in log.read_text():
                break
            time.sleep(0.2)
    finally:
        stop_session(proc.pid)
        proc.wait()
    return log.read_text()


@pytest.mark.usefixtures("ray_namespace")
@needs_ray
def test_the_local_ray_takes_only_the_sweeps_own_token(tmp_path):
    """The local Ray's token is fresh, in a 0600 file in a 0700 directory, and removed at the end; a client
    without it, or with another, is refused; with it, the same client connects."""
    # Two seeds of 40 epochs: long enough for the probes; Ctrl-C ends it.
    text = 'seeds = 2\nval_split = 200\n[recipe]\nmodel = "lenet_bn"\nepochs = 40\n[data]\ntrain_subset = 1000\ntest_subset = 200\n'
    space = space_file(tmp_path, text)
    sweep = Sweep(str(space), "--out", str(tmp_path), "--name", "token")
    raylet = []

    def raylet_and_a_trial() -> bool:
        raylet[:] = [p for p in session_pids(sweep.proc.pid) if "/raylet" in cmdline(p).split(" ")[0]]
        return bool(raylet) and (tmp_path / "token" / "trial-0000").exists()

    try:
        sweep.wait_for(raylet_and_a_trial, "the local Ray's raylet and a trial")
        environ = dict(e.split("=", 1) for e in Path(f"/proc/{raylet[0]}/environ").read_text().split("\0") if "=" in e)
        address = next(a.split("=", 1)[1] for a in cmdline(raylet[0]).split(" ") if a.startswith("--gcs-address="))
        token = Path(environ["RAY_AUTH_TOKEN_PATH"])
        assert environ["RAY_AUTH_MODE"] == "token" and token.name == "auth_token" and ".ray" not in token.parts
        assert token.stat().st_mode & 0o777 == 0o600 and token.parent.stat().st_mode & 0o777 == 0o700
        assert token.stat().st_uid == os.getuid() and len(token.read_text()) == 64
        # The trial's worker runs at the usual priority, not Ray's niceness 15 (starved beside any other work).
        workers = [p for p in session_pids(sweep.proc.pid) if cmdline(p).startswith("ray::ImplicitFunc")]
        assert workers and all(int(Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[16]) == 0 for p in workers)
        (tmp_path / "home").mkdir()
        plain = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")} | {"HOME": str(tmp_path / "home")}
        with_it = probe(sweep.proc.pid, address, plain | {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)},
                        tmp_path / "with.log")  # fmt: skip
        assert "connected 2.0" in with_it, with_it[-2000:]  # the probe works: the refusals below are the token's
        refused = "InvalidAuthToken"
        without = probe(sweep.proc.pid, address, plain, tmp_path / "without.log")
        assert refused in without and "connected" not in without, without[-2000:]
        other = probe(sweep.proc.pid, address, plain | {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "0" * 64},
                      tmp_path / "other.log")  # fmt: skip
        assert refused in other and "connected" not in other, other[-2000:]
        assert sweep.proc.poll() is None, "the sweep ended before the probes: give it more epochs"
        os.kill(sweep.proc.pid, signal.SIGINT)
        sweep.wait(code=130)
    finally:
        stop_session(sweep.proc.pid)
    assert not token.exists() and not token.parent.exists()


@pytest.mark.usefixtures("ray_namespace")
@needs_ray
def test_an_optuna_sweep_runs_the_seeded_proposals_one_at_a_time(tmp_path):
    """search = "optuna" under real Ray Tune, max_concurrent = 1: the configurations recorded in plan.json and
    trained are those the seeded search algorithm proposes (its first proposals are its seeded start-up draws)."""
    from test_sweep import optuna_proposals, plan_of

    text = ('search = "optuna"\ntrials = 3\nmax_concurrent = 1\nval_split = 300\n[recipe]\nmodel = "lenet_bn"\n'
            'epochs = 1\n[vary]\nlr = { loguniform = [0.001, 0.1] }\n[data]\ntrain_subset = 1500\ntest_subset = 300\n')
    out, _ = Sweep(str(space_file(tmp_path, text)), "--out", str(tmp_path), "--name", "optuna").wait()
    expected, _ = optuna_proposals(plan_of(text, tmp_path, "expected"), 3)
    plan = json.loads((tmp_path / "optuna" / "plan.json").read_text())
    assert plan["configurations"] == [{"lr": c["lr"]} for c in expected]
    rows = read_table(tmp_path / "optuna")["rows"]
    assert sorted(r["params"]["lr"] for r in rows) == sorted(c["lr"] for c in expected)
    assert all(r["finished"] == 1 for r in rows) and "trials 3/3 done" in out
    assert (tmp_path / "optuna" / "best_recipe.toml").exists()

