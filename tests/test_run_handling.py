"""Run handling as a user meets it: refusals before anything is printed, resumes that keep a run's
choices, a report of a run that cannot be written to, and the way numbers and words are written."""

import json
import subprocess

import pytest
import torch

from conftest import LENET, REPO
from lenet.core.errors import DataError
from lenet.core.text import clip, plural, rounded
from lenet.training.recipes import get_recipe


def lenet(*args, **kwargs):
    return subprocess.run([*LENET, *map(str, args)], capture_output=True, text=True, cwd=REPO, timeout=300, **kwargs)


def refused_before_the_header(proc, fragment: str) -> None:
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(err) == 1 and fragment in err[0], proc.stderr
    assert proc.stdout == "", f"printed before the refusal: {proc.stdout!r}"


def test_a_validation_split_as_large_as_the_training_set_is_refused_before_the_header(tmp_path):
    proc = lenet("train", "--val-split", 70000, "--epochs", 1, "--device", "cpu", "--out", tmp_path)
    refused_before_the_header(proc, "a validation split of 70000 images needs 0 < size < 60000")
    assert list(tmp_path.iterdir()) == []


def test_an_existing_run_name_is_refused_before_the_header(tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("mine")
    proc = lenet("train", "--name", "taken", "--epochs", 1, "--device", "cpu", "--out", tmp_path)
    refused_before_the_header(proc, "already exists")
    assert [p.name for p in (tmp_path / "taken").iterdir()] == ["keep.txt"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: nothing to refuse")
def test_cuda_without_cuda_is_refused_before_the_header(tmp_path):
    proc = lenet("train", "--device", "cuda", "--epochs", 1, "--out", tmp_path)
    refused_before_the_header(proc, "cuda")
    assert list(tmp_path.iterdir()) == []


def fake_cuda_run(tmp_path):
    """A run directory whose config.json says it trained on a GPU (a resume reads nothing else first)."""
    run = tmp_path / "gpu-run"
    run.mkdir()
    config = {"recipe_name": "default", "recipe": get_recipe("default").to_dict(), "seed": 0, "val_split": 0,
              "device": "cuda:0", "deterministic": False, "data": {"name": "fashion-mnist"}}  # fmt: skip
    (run / "config.json").write_text(json.dumps(config))
    return run


def test_resume_refuses_another_device_kind(tmp_path):
    run = fake_cuda_run(tmp_path)
    proc = lenet("train", "--resume", run, "--device", "cpu")
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(err) == 1 and "trained on cuda; --resume --device cpu" in err[0], proc.stderr
    assert sorted(p.name for p in run.iterdir()) == ["config.json"]


def test_the_report_choice_is_recorded_and_older_runs_wrote_their_report():
    """test_resume.py's fault test shows a resume keeping --no-report end to end."""
    from lenet.runs.config import ConfigRecord

    saved_report = lambda extra: ConfigRecord.model_validate(  # noqa: E731
        {"recipe_name": "default", "recipe": {}, "model_config": {}, "seed": 0, "device": "cpu", **extra}).report
    assert saved_report({"report": False}) is False and saved_report({}) is True


def test_plural_and_rounded():
    assert plural(1, "seed") == "1 seed" and plural(2, "seed") == "2 seeds" and plural(0, "epoch") == "0 epochs"
    assert plural(2, "seed", count=False) == "seeds" and plural(1, "class", "classes", count=False) == "class"
    assert rounded(0.7 + 0.1) == 0.8 and 0.7 + 0.1 != 0.8
    assert rounded(torch.tensor(0.892).item()) == 0.892 and torch.tensor(0.892).item() != 0.892
    assert rounded({"a": [0.1 + 0.2, 3, "x", None, True]}) == {"a": [0.3, 3, "x", None, True]}
    assert rounded(float("nan")) != rounded(float("nan")) and rounded(float("inf")) == float("inf")


def test_clip_keeps_the_first_line_and_marks_a_cut():
    assert clip("short", 10) == "short" and clip("x" * 11, 10) == "x" * 7 + "..." and len(clip("y" * 5000)) == 300
    assert clip("first line\nsecond line") == "first line" and clip("") == ""


def test_seed_statistics_are_written_rounded(tmp_path):
    from lenet.runs.directory import write_seeds

    write_seeds(tmp_path, {}, {"runs": 2, "mean": 0.7 + 0.1, "std": 0.1, "min": 0.7, "max": 0.9, "accuracies": [0.7, 0.9]})
    assert "\"mean\": 0.8," in (tmp_path / "seeds.json").read_text()


def test_threads_help_says_its_default_once():
    from lenet.cli import build_parser

    train = build_parser()._subparsers._group_actions[0].choices["train"]
    threads = next(a for a in train._actions if a.dest == "threads")
    assert threads.help.count("default") == 1 and "one per core" in threads.help, threads.help


def test_lenet_models_says_how_often_the_seed_recipe_sticks_as_the_10_seed_study_found():
    proc = lenet("models")
    line = next(line for line in proc.stdout.splitlines() if line.strip().startswith("seed "))
    assert "2 of seeds 0-9" in line and "third" not in line


def test_an_offline_download_names_each_mirror_once(tmp_path):
    from lenet.data.sources import download_file

    mirrors = ["http://127.0.0.1:9/first/", "http://127.0.0.1:9/second/"]  # the discard port: refused at once
    with pytest.raises(DataError) as caught:
        download_file("train-labels-idx1-ubyte.gz", tmp_path, "0" * 64, mirrors, attempts=3, backoff_s=0)
    message = str(caught.value)
    for mirror in mirrors:
        assert message.count(mirror) == 1, message
    assert "3 tries" in message
