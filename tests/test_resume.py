"""Work is never lost: SIGKILL at random moments, resume, and end bit-identical."""

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from conftest import REPO

WORKER = """
import sys
from dataclasses import replace
from lenet import FashionMNIST, TrainConfig, get_recipe, load_fashion_mnist
from lenet.train import resume_config, train
mode, out, name = sys.argv[1:4]
d = load_fashion_mnist(download=False)
print("ready", flush=True)
d = FashionMNIST(d.train_images[:3072], d.train_labels[:3072], d.test_images[:500], d.test_labels[:500], d.source,
                 d.sha256, d.spec)
recipe = replace(get_recipe("default"), model="lenet_bn", epochs=6, batch_size=256, shift=2, flip=True, test_flip=True)
config = TrainConfig(recipe=recipe, device="cpu", out=out, name=name, progress=False, seed=7)
say = lambda row: print("epoch", row.epoch, flush=True)
if mode == "start":
    train(config, d, on_epoch=say)
else:
    run = f"{out}/{name}"
    train(resume_config(run, progress=False), d, resume=run, on_epoch=say)
print("done", flush=True)
"""


def worker(mode, out, name):
    return subprocess.Popen([sys.executable, "-c", WORKER, mode, str(out), name], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip


def finished(run):
    summary = run / "summary.json"
    return summary.exists()


def test_killed_runs_resume_to_the_same_weights(tmp_path):
    reference = worker("start", tmp_path, "whole")
    assert reference.wait(timeout=240) == 0, reference.stderr.read()
    whole = tmp_path / "whole"

    rng = random.Random(int(os.environ.get("LENET_KILL_SEED", "0")))
    run, kills, mode, interrupted = tmp_path / "killed", [], "start", 0
    while not finished(run):
        proc = worker(mode, tmp_path, "killed")
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        if len(kills) < 4:  # four kills at random moments of training (after an epoch ends), then let it finish
            assert proc.stdout.readline().startswith("epoch"), proc.stderr.read()
            delay = rng.uniform(0.0, 0.5)
            time.sleep(delay)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills.append(round(delay, 2))
            interrupted += not finished(run)  # the kill cut the run short, whatever the machine's speed
        assert proc.wait(timeout=240) in (0, -signal.SIGKILL), proc.stderr.read()
        mode = "resume" if (run / "config.json").exists() else "start"  # a kill before that: start again
    a, b = load_file(whole / "model.safetensors"), load_file(run / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    read = lambda d: json.loads((d / "summary.json").read_text())  # noqa: E731
    assert read(whole)["test"] == read(run)["test"]
    metrics = lambda d: [line.split(",")[:6] for line in (d / "metrics.csv").read_text().splitlines()]  # noqa: E731
    assert metrics(whole) == metrics(run)
    assert interrupted == len(kills) == 4, f"kills {kills}: only {interrupted} came before the run's end"


@pytest.mark.parametrize("delay", [0.0, 0.4, 1.1])  # at the end-of-epoch writes, mid-epoch, later
def test_ctrl_c_saves_and_says_how_to_resume(tmp_path, delay):
    proc = subprocess.Popen(
        [sys.executable, "-m", "lenet.cli", "train", "--recipe", "seed", "--epochs", "20", "--device", "cpu",
         "--out", str(tmp_path), "--name", "r", "--no-progress"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
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
                                   ["--no-save-run"], ["--seed", "5", "--lr", "0.1"]])  # fmt: skip
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
