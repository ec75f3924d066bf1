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
from lenet import TrainConfig, get_recipe, load_fashion_mnist
from lenet.data.batches import subset
from lenet.training.loop import resume_config, train
mode, out, name, epochs = sys.argv[1:5]
torch.set_num_threads(1)  # a tiny net on a busy machine: one thread is many times faster
d = load_fashion_mnist(download=False)
print("ready", flush=True)
d = subset(d, 3072, 500)
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
    assert proc.returncode == 1 and "--resume continues a run as it was started; drop " in proc.stderr
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
