"""A training started beside busy lenet processes takes its share of the cores, decided once and recorded
(core/cpushare.py; issue 39's neighbour goal). Speeds are the benchmark's (benchmarks/thread_policy.py), not a
test's: these check who is counted, what is chosen and that the run keeps it."""

import json
import subprocess
import sys
import time
from dataclasses import replace

import pytest
import torch

from lenet import TrainConfig, get_recipe, train
from lenet.core import cpushare
from lenet.training.resume import resume_config

# A process in the registry that spins (busy) or sleeps (idle) for up to a minute.
NEIGHBOUR = """
import sys, time
from lenet.core.cpushare import registered
with registered():
    print("registered", flush=True)
    end = time.monotonic() + 60
    while time.monotonic() < end:
        if sys.argv[1] == "idle":
            time.sleep(0.05)
"""


@pytest.fixture
def registry(tmp_path, monkeypatch):
    folder = tmp_path / "registry"
    monkeypatch.setenv(cpushare.REGISTRY_ENV, str(folder))
    procs = []

    def start(kind: str) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-c", NEIGHBOUR, kind], stdout=subprocess.PIPE, text=True)
        procs.append(proc)
        assert proc.stdout.readline().strip() == "registered"
        return proc

    yield folder, start
    for proc in procs:
        proc.kill()
        proc.wait()


def test_busy_neighbours_count_the_busy_not_the_idle_the_dead_or_this_process(registry):
    folder, start = registry
    assert cpushare.busy_neighbours() == 0  # no registry at all yet
    busy, idle = start("busy"), start("idle")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (folder / str(dead.pid)).write_text("12345")  # an entry its process never removed
    (folder / "notes.txt").write_text("not a process")
    with cpushare.registered():
        assert (folder / str(busy.pid)).is_file() and (folder / str(idle.pid)).is_file()
        assert cpushare.busy_neighbours() == 1
        assert cpushare.fair_threads(2) == (1, 1) and cpushare.fair_threads(8) == (4, 1)
    assert not (folder / str(dead.pid)).exists()  # stale: removed
    idle.kill()
    idle.wait()
    time.sleep(0.1)
    busy.kill()
    busy.wait()
    assert cpushare.busy_neighbours() == 0 and sorted(p.name for p in folder.iterdir()) == ["notes.txt"]


def test_an_entry_of_a_reused_pid_is_not_taken_for_the_process(registry):
    folder, start = registry
    busy = start("busy")
    (folder / str(busy.pid)).write_text("1")  # another start time: the pid's earlier owner
    assert cpushare.busy_neighbours() == 0 and not (folder / str(busy.pid)).exists()


def _config(tmp_path, name):
    recipe = replace(get_recipe("default"), model="lenet_bn", epochs=1, batch_size=64)
    return TrainConfig(recipe=recipe, device="cpu", out=str(tmp_path), name=name, progress=False, report=False)


def test_a_run_started_beside_a_busy_lenet_takes_its_share_and_keeps_it_on_resume(fmnist, tmp_path, registry,
                                                                                   monkeypatch):  # fmt: skip
    _, start = registry
    data = fmnist.subset(512, 128)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    torch.set_num_threads(2)  # two cores' worth, whatever the test process was given
    try:
        alone = train(_config(tmp_path, "alone"), data=data)
        start("busy")
        shared = train(_config(tmp_path, "shared"), data=data)
        assert torch.get_num_threads() == 2  # the run's share was its own: the process gets its threads back
        monkeypatch.setenv("OMP_NUM_THREADS", "2")  # threads chosen by whoever started the process: kept
        chosen = train(_config(tmp_path, "chosen"), data=data)
    finally:
        torch.set_num_threads(before)
    engine = lambda run: json.loads((run.run_dir / "config.json").read_text())["engine"]["threads"]  # noqa: E731
    assert (engine(alone), engine(shared), engine(chosen)) == (None, 1, None)
    assert shared.warnings[0] == ("1 other lenet process busy on this machine: this run takes 1 thread of 2 "
                                  "(recorded in config.json; --threads 2 takes them all)")  # fmt: skip
    assert not alone.warnings and not chosen.warnings
    assert resume_config(shared.run_dir).engine.threads == 1  # a resume computes as the run began
