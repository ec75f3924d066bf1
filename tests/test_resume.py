"""Work is never lost: SIGKILL at random moments, resume, and end bit-identical."""

import json
import os
import random
import selectors
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from conftest import REPO

EPOCHS = 6
WORKER = """
import sys
from dataclasses import replace
import torch
from lenet import FashionMNIST, TrainConfig, get_recipe, load_fashion_mnist
from lenet.training.loop import train
from lenet.training.resume import resume_config
mode, out, name, epochs = sys.argv[1:5]
torch.set_num_threads(1)  # a tiny net on a busy machine: one thread is many times faster
d = load_fashion_mnist(download=False)
print("ready", flush=True)
d = FashionMNIST(d.train_images[:3072], d.train_labels[:3072], d.test_images[:500], d.test_labels[:500], d.source,
                 d.sha256, d.spec)
recipe = replace(get_recipe("default"), model="lenet_bn", epochs=int(epochs), batch_size=256, shift=2, flip=True,
                 test_flip=True)
config = TrainConfig(recipe=recipe, device="cpu", out=out, name=name, progress=False, seed=7)
say = lambda row: print(f"epoch {row.epoch}", flush=True)  # after the epoch's writes: it is on disk
if mode == "start":
    train(config, d, on_epoch=say)
else:
    run = f"{out}/{name}"
    train(resume_config(run, progress=False), d, on_epoch=say, resume=run)
print("done", flush=True)
"""


def worker(mode, out, name):
    return subprocess.Popen([sys.executable, "-c", WORKER, mode, str(out), name, str(EPOCHS)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip


def next_line(proc, timeout: float = 240) -> str:
    """The worker's next line of output; "" when it ended (or went quiet for `timeout` s)."""
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        return proc.stdout.readline().strip() if selector.select(timeout) else ""


def finished(run):
    return (run / "summary.json").exists()


def epochs_on_disk(run) -> int:
    """The last completed epoch that a resume would go on from (0: none)."""
    state = run / "train_state.pt"
    return torch.load(state, weights_only=True)["epoch"] if state.exists() else 0


def test_killed_runs_resume_to_the_same_weights(tmp_path):
    reference = worker("start", tmp_path, "whole")
    assert next_line(reference) == "ready", reference.stderr.read()
    stamps = []  # when each epoch line came: the kills below are placed in epochs of this length
    while (line := next_line(reference)).startswith("epoch"):
        stamps.append(time.monotonic())
    assert line == "done" and reference.wait(timeout=60) == 0, reference.stderr.read()
    assert len(stamps) == EPOCHS
    epoch_s = min(b - a for a, b in zip(stamps, stamps[1:]))
    whole = tmp_path / "whole"

    # Four kills: the first during start-up or the first epoch (before anything is saved), each of
    # the others at a random moment of the epoch after the one the process has just finished
    # (mid-step, in the evaluation or among the end-of-epoch writes). Each is placed by the epoch
    # lines, not by a fixed time, so on a fast machine too it lands mid-run.
    rng = random.Random(int(os.environ.get("LENET_KILL_SEED", "0")))
    run, on_disk, kills = tmp_path / "killed", [], []
    for i in range(4):
        proc = worker("resume" if (run / "config.json").exists() else "start", tmp_path, "killed")
        assert next_line(proc) == "ready", proc.stderr.read()
        if i > 0:  # wait for this process to complete an epoch of its own
            assert next_line(proc).startswith("epoch"), f"kill {i + 1}: the run ended first: {proc.stderr.read()}"
        delay = rng.uniform(0.0, 0.5) * epoch_s
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=60) == -signal.SIGKILL
        kills.append(round(delay, 2))
        on_disk.append(epochs_on_disk(run))
        assert not finished(run) and on_disk[-1] < EPOCHS, f"kill {i + 1} came after the run ended: {on_disk}"
    # Each resumed process went on from where the last one stopped (it never started over).
    assert on_disk[1:] == sorted(set(on_disk[1:])) and on_disk[1] >= 1, on_disk
    last = worker("resume", tmp_path, "killed")  # the rest of the run, from on_disk[-1] epochs
    out, err = last.communicate(timeout=240)
    assert last.returncode == 0, err
    assert [line for line in out.split() if line.isdigit()] == [str(e) for e in range(on_disk[-1] + 1, EPOCHS + 1)]
    assert finished(run)

    a, b = load_file(whole / "model.safetensors"), load_file(run / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    read = lambda d: json.loads((d / "summary.json").read_text())  # noqa: E731
    assert read(whole)["test"] == read(run)["test"]
    metrics = lambda d: [line.split(",")[:6] for line in (d / "metrics.csv").read_text().splitlines()]  # noqa: E731
    assert metrics(whole) == metrics(run)
    print(f"kills (s into an epoch of {epoch_s:.2f} s): {kills}; epochs on disk after each: {on_disk}")


# --- a fault right after each write of an epoch's records ----------------------------------

# `lenet train` as a user runs it, on a small subset, with one of its record writers patched to
# fault the process right after it wrote: SIGKILL (nothing runs after it, as for a machine that
# loses power) or SIGINT (Ctrl-C: Python's KeyboardInterrupt at the next bytecode). The point is
# WHAT@EPOCH: the write of that epoch's train state, metrics or weights, or the summary (the last).
WRITES_WORKER = """
import os, signal, sys
from lenet.cli import main
import lenet.data.load
from lenet.data.dataset import Dataset
from lenet.runs import directory as runs

fault, point, argv = sys.argv[1], sys.argv[2], sys.argv[3:]
full = lenet.data.load.load_dataset("fashion-mnist", download=False)
small = Dataset(full.train_images[:1024], full.train_labels[:1024], full.test_images[:256], full.test_labels[:256],
                full.source, full.sha256, full.spec)
lenet.data.load.load_dataset = lambda *a, **k: small
reached = []
what, _, at = point.partition("@")
epoch_of = {  # the epoch each writer writes, from its arguments
    "state": lambda run, state: state.epoch,
    "metrics": lambda run, history: len(history),
    "weights": lambda model, path, extra: int(extra["epoch"]),
    "summary": lambda run, summary: summary["epochs"],
}
writers = {"state": "write_train_state", "metrics": "write_metrics", "weights": "save_model", "summary": "write_summary"}

def faulting(kind, writer):
    def write(*args):
        result = writer(*args)
        if kind == what and (not at or epoch_of[kind](*args) == int(at)):
            print(f"fault after {kind} of epoch {epoch_of[kind](*args)}", flush=True)
            os.kill(os.getpid(), signal.SIGKILL if fault == "kill" else signal.SIGINT)
        return result
    return write

for kind, attribute in writers.items():
    setattr(runs, attribute, faulting(kind, getattr(runs, attribute)))
sys.exit(main(argv))
"""
WRITES_EPOCHS = 3


def train_argv(out, name):
    return ["train", "--model", "lenet_bn", "--epochs", str(WRITES_EPOCHS), "--batch-size", "256", "--precision", "fp32",
            "--threads", "1", "--device", "cpu", "--no-progress", "--no-report", "--out", str(out), "--name", name]  # fmt: skip


def run_writes_worker(fault, point, argv):
    return subprocess.run([sys.executable, "-c", WRITES_WORKER, fault, point, *argv], cwd=REPO, capture_output=True,
                          text=True, timeout=300, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("whole")
    proc = run_writes_worker("none", "", train_argv(out, "whole"))
    assert proc.returncode == 0, proc.stderr
    return out / "whole"


def weights_epoch(run) -> str | None:
    from safetensors import safe_open

    if not (run / "model.safetensors").exists():
        return None
    with safe_open(str(run / "model.safetensors"), framework="pt") as f:
        return f.metadata()["epoch"]


def on_disk(run) -> dict:
    """Which epoch each record of the run holds (None: not written)."""
    metrics = run / "metrics.csv"
    return {
        "state": epochs_on_disk(run) if (run / "train_state.pt").exists() else None,
        "metrics": len(metrics.read_text().splitlines()) - 1 if metrics.exists() else None,
        "weights": int(weights_epoch(run)) if weights_epoch(run) is not None else None,
        "summary": json.loads((run / "summary.json").read_text())["epochs"] if finished(run) else None,
    }


# Each fault in turn on one run, each process resuming the last: after the state of epoch 1 (the
# other records of the epoch not yet written), after the metrics of epoch 2 (its weights not yet
# written, epoch 1's on disk), after the weights of epoch 3 (no summary yet), after the summary.
FAULTS = [("state@1", {"state": 1, "metrics": None, "weights": None, "summary": None}),
          ("metrics@2", {"state": 2, "metrics": 2, "weights": 1, "summary": None}),
          ("weights@3", {"state": 3, "metrics": 3, "weights": 3, "summary": None}),
          ("summary", {"state": 3, "metrics": 3, "weights": 3, "summary": 3})]  # fmt: skip


def same_run(a, b):
    """Bit-identical weights, the same test figures, the same per-epoch losses and accuracies."""
    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    read = lambda d: json.loads((d / "summary.json").read_text())  # noqa: E731
    assert read(a)["test"] == read(b)["test"]
    metrics = lambda d: [line.split(",")[:6] for line in (d / "metrics.csv").read_text().splitlines()]  # noqa: E731
    assert metrics(a) == metrics(b)


@pytest.mark.parametrize("fault", ["kill", "ctrl-c"])
def test_a_fault_right_after_each_write_loses_nothing(tmp_path, uninterrupted, fault):
    run = tmp_path / "r"
    for i, (point, expected) in enumerate(FAULTS):
        argv = train_argv(tmp_path, "r") if i == 0 else ["train", "--resume", str(run), "--no-progress"]
        proc = run_writes_worker("kill" if fault == "kill" else "int", point, argv)
        what = point.replace("@", " of epoch ") if "@" in point else f"summary of epoch {WRITES_EPOCHS}"
        assert f"fault after {what}" in proc.stdout, (point, proc.stdout, proc.stderr)
        assert on_disk(run) == expected, point  # the fault landed right after that write, before the next
        assert not list(run.glob(".*.tmp")), "an atomic write left its temporary file"
        if fault == "kill":
            assert proc.returncode == -signal.SIGKILL, proc.stderr
        else:
            last = proc.stderr.strip().splitlines()[-1]
            assert proc.returncode == 130 and "Traceback" not in proc.stderr, proc.stderr
            assert last.endswith(f"{run} is complete" if point == "summary" else f"lenet train --resume {run}"), last
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    proc = run_writes_worker("none", "", ["train", "--resume", str(run), "--no-progress"])
    assert proc.returncode == 0 and f"{run} is finished ({WRITES_EPOCHS} of {WRITES_EPOCHS} epochs" in proc.stdout
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before  # a finished run is left as it was
    assert not (run / "report.html").exists()  # started with --no-report: the resumes kept that choice
    same_run(uninterrupted, run)


@pytest.mark.parametrize("delay", [0.0, 0.4, 1.1])  # at the end-of-epoch writes, mid-epoch, later
def test_ctrl_c_saves_and_says_how_to_resume(tmp_path, delay):
    proc = subprocess.Popen(
        [sys.executable, "-m", "lenet.cli", "train", "--recipe", "seed", "--epochs", "20", "--device", "cpu",
         "--out", str(tmp_path), "--name", "r", "--no-progress"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # A shell without job control starts background jobs with Ctrl-C ignored, and Python keeps that:
        # the child gets the default, as a terminal's foreground command has, however the tests were started.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    deadline = time.time() + 180
    while not (tmp_path / "r" / "train_state.pt").exists():
        assert time.time() < deadline and proc.poll() is None
        time.sleep(0.2)
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert err.strip().splitlines()[-1].endswith(f"lenet train --resume {tmp_path / 'r'}") and "Traceback" not in err
    state = torch.load(tmp_path / "r" / "train_state.pt", weights_only=True)
    assert state["epoch"] >= 1


@pytest.mark.parametrize("flags", [["--epochs", "3"], ["--seed", "5"], ["--recipe", "seed"], ["--precision", "bf16"],
                                   ["--compile"], ["--no-fused"], ["--betas", "0.8", "0.9"], ["--val-split", "100"],
                                   ["--no-save-run"], ["--seed", "5", "--lr", "0.1"], ["--eval-every", "2"]])  # fmt: skip
def test_resume_refuses_every_flag_that_would_change_the_run(tmp_path, flags):
    proc = subprocess.run([sys.executable, "-m", "lenet.cli", "train", "--resume", str(tmp_path), *flags],
                          capture_output=True, text=True, cwd=REPO)  # fmt: skip
    named = [f.replace("--no-", "--") for f in flags if f.startswith("--")]
    assert proc.returncode == 2 and "--resume continues a run as it was started; drop " in proc.stderr  # a usage error
    assert all(flag in proc.stderr.split("drop ")[1] for flag in named), proc.stderr


@pytest.mark.parametrize("content", [b"", b"garbage", None])
def test_resume_of_a_damaged_run_is_one_line(tmp_path, content):
    run = tmp_path / "r"
    run.mkdir()
    (run / "config.json").write_text('{"recipe": {}}' if content is None else "{not json")
    if content is not None:
        (run / "train_state.pt").write_bytes(content)
    proc = subprocess.run([sys.executable, "-m", "lenet.cli", "train", "--resume", str(run)],
                          capture_output=True, text=True, cwd=REPO)  # fmt: skip
    assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
