"""The `lenet` command end to end, as a user runs it: subprocesses, exit codes, stderr."""

import json
import subprocess
from dataclasses import replace

import pytest
import torch
from PIL import Image

from conftest import LENET
from lenet import load
from lenet.data.registry import DATASETS

CLASSES = DATASETS["fashion-mnist"].classes


def lenet(*args, cwd=None):
    return subprocess.run([*LENET, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=240)


def assert_clean_error(proc, *fragments):
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def lenet_on_a_terminal(*args, tmp_path):
    """Run lenet as in a shell: stderr on a pseudo-terminal. Returns (process, stdout, what the terminal showed)."""
    import fcntl
    import os
    import pty
    import struct
    import termios

    controller, terminal = pty.openpty()
    # A new pseudo-terminal is 0 columns wide, where tqdm draws nothing; a user's has a width.
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    with open(tmp_path / "stdout", "w+") as stdout:
        proc = subprocess.Popen([*LENET, *map(str, args)], stdout=stdout, stderr=terminal)
        os.close(terminal)
        shown = b""
        while True:
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            shown += chunk
        proc.wait(timeout=240)
        os.close(controller)
        stdout.seek(0)
        return proc, stdout.read(), shown.decode(errors="replace")


def test_summary_prints_the_tutorial_shapes():
    proc = lenet("summary")
    assert proc.returncode == 0, proc.stderr
    assert "[64, 16, 4, 4]" in proc.stdout and "[64, 256]" in proc.stdout and "44,426" in proc.stdout


@pytest.fixture(scope="module")
def trained_on_a_terminal(tmp_path_factory):
    """A run trained as in a shell (stderr on a terminal): (run, stdout, what the terminal showed)."""
    out = tmp_path_factory.mktemp("runs")
    proc, stdout, shown = lenet_on_a_terminal("train", "--recipe", "seed", "--model", "lenet_bn", "--epochs", "1",
                                              "--batch-size", "256", "--device", "cpu", "--out", out, "--name", "r1",
                                              tmp_path=tmp_path_factory.mktemp("terminal"))  # fmt: skip
    assert proc.returncode == 0, shown
    return out / "r1", stdout, shown


@pytest.fixture(scope="module")
def trained_run(trained_on_a_terminal):
    run, stdout, _ = trained_on_a_terminal
    return run, stdout


def test_training_shows_its_batches_evaluations_and_final_figures_on_a_terminal(trained_on_a_terminal):
    _, stdout, shown = trained_on_a_terminal
    assert "epoch 1/1:" in shown and "batch/s" in shown  # the training bar
    assert "epoch 1/1 evaluating" in shown  # the per-epoch evaluation's bar
    assert "final figures: the image alone ..." in shown and "final figures: the image alone: done in" in shown
    assert "drawing the figures: done in" in shown  # the report after training
    assert "epoch 1/1 evaluating" not in stdout and "done in" not in stdout  # stdout holds the results alone


def test_train_prints_epochs_and_the_final_accuracy(trained_run):
    run, stdout = trained_run
    assert "epoch  1/1" in stdout and "img/s" in stdout and "test acc" in stdout
    assert f"run saved to {run}" in stdout
    assert f"report written to {run / 'report.html'}" in stdout and (run / "plots" / "confusion.png").is_file()
    summary = json.loads((run / "summary.json").read_text())
    assert f"test accuracy {summary['test']['accuracy']:.2%}" in stdout


def test_eval_json_agrees_with_the_run_summary(trained_run):
    run, _ = trained_run
    proc = lenet("eval", run, "--json", "--batch-size", "333")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    summary = json.loads((run / "summary.json").read_text())["test"]
    assert result["total"] == 10_000 and result["correct"] == summary["correct"]
    assert len(result["confusion_matrix"]) == 10 and "Ankle boot" in result["per_class_accuracy"]


def test_eval_table_prints_the_runs_figures(trained_run):
    run, _ = trained_run
    proc = lenet("eval", run)
    assert proc.returncode == 0
    test = json.loads((run / "summary.json").read_text())["test"]
    assert f"({test['correct']}/10000)" in proc.stdout and "confusion matrix" in proc.stdout
    # One row per class, numbered and named once, holding that class's row of the run's confusion matrix.
    matrix = proc.stdout.split("confusion matrix")[1].splitlines()[2:]
    rows = [line.split() for line in matrix if line.strip()]
    assert [row[-10:] for row in rows] == [[str(v) for v in r] for r in test["confusion_matrix"]]
    assert [" ".join(row[:-10]) for row in rows] == [f"{i} {name}" for i, name in enumerate(CLASSES)]


def test_eval_and_export_say_each_stage_on_a_terminal_and_nothing_when_piped(trained_run, tmp_path):
    run, _ = trained_run
    proc, stdout, shown = lenet_on_a_terminal("eval", run, tmp_path=tmp_path)
    assert proc.returncode == 0, shown
    for stage in (f"loading {run}", "loading fashion-mnist", "evaluating 10,000 test images (the image alone)"):
        assert f"{stage} ..." in shown and f"{stage}: done in" in shown, shown
    assert "test accuracy" in stdout and "test accuracy" not in shown  # the results stay on stdout
    piped = lenet("eval", run)
    assert piped.returncode == 0 and piped.stderr == "" and piped.stdout == stdout

    proc, stdout, shown = lenet_on_a_terminal("export", run, "--format", "torchscript", "--output",
                                              tmp_path / "m.pt", tmp_path=tmp_path)  # fmt: skip
    assert proc.returncode == 0, shown
    for stage in ("exporting to torchscript", "loading fashion-mnist", "on 10,000 test images"):
        assert f"{stage} ..." in shown and f"{stage}: done in" in shown, shown
    assert "verifying with torch.jit.load" in shown


def test_predict_json(trained_run, fmnist, tmp_path):
    run, _ = trained_run
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(fmnist.test_images[i, 0].numpy(), mode="L").save(paths[-1])
    proc = lenet("predict", run, *paths, "--json", "--top-k", "2")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)["predictions"]  # POST /predict's document, with its keys
    assert [o["name"] for o in out] == [str(p) for p in paths] and all(len(o["top"]) == 2 for o in out)
    assert all(set(o) == {"name", "label", "top"} and set(o["top"][0]) == {"class", "probability"} for o in out)
    # rounded: 0.8920000195503235 was float32 noise printed in full
    assert all(len(repr(t["probability"]).split(".")[-1]) <= 6 for o in out for t in o["top"])
    with torch.no_grad():  # the model's own answer for the same images
        probabilities = load(run)(fmnist.test_images[:3].float() / 255).softmax(1)
    top = probabilities.topk(2, dim=1)
    assert [[t["class"] for t in o["top"]] for o in out] == [[CLASSES[i] for i in row] for row in top.indices.tolist()]
    assert all(abs(o["top"][k]["probability"] - p) < 1e-5 for o, row in zip(out, top.values.tolist())
               for k, p in enumerate(row))  # fmt: skip
    text = lenet("predict", run, paths[0])
    assert text.stdout.startswith(f"{paths[0]}: {out[0]['label']} ")
    assert_clean_error(lenet("predict", run, paths[0], "--top-k", "11"), "--top-k must be from 1 to 10")


def test_existing_run_name_is_refused_and_kept(trained_run):
    run, _ = trained_run
    before = (run / "model.safetensors").read_bytes()
    proc = lenet("train", "--recipe", "seed", "--epochs", "1", "--out", run.parent, "--name", run.name)
    assert_clean_error(proc, "already exists")
    assert (run / "model.safetensors").read_bytes() == before


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["train", "--epochs", "0"], "--epochs: epochs must be >= 1, not 0"),
        (["train", "--lr", "abc"], "--lr"),
        (["train", "--model", "resnet"], "unknown model 'resnet'"),
        (["train", "--device", "tpu"], "unknown device 'tpu'"),
        (["eval", "x", "--device", "cuda:x"], "unknown device 'cuda:x'"),
        (["train", "--lr", "inf"], "lr must be finite"),
        (["train", "--epochs", "1.5"], "'1.5' is not a whole number"),
        (["train", "--seed", "1.5"], "--seed: '1.5' is not a whole number"),  # not argparse's "invalid int value"
        (["serve", "x", "--port", "1.5"], "--port: '1.5' is not a whole number"),  # not "a int"
        (["summary", "--batch-size", "-1"], "--batch-size"),
        (["eval"], "RUN_OR_CHECKPOINT"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_flags_give_one_line(args, fragment):
    proc = lenet(*args)
    assert proc.returncode == 2
    assert_clean_error(proc, fragment)


@pytest.mark.parametrize("flag", ["--shift", "--test-shift"])
def test_shifts_beyond_the_image_are_refused(flag):
    proc = lenet("train", flag, "9", "--no-save-model")
    assert proc.returncode == 2
    assert_clean_error(proc, f"{flag[2:]} must be >= 0 and <= 8, not 9")


def test_missing_checkpoint_and_bad_image(trained_run, tmp_path):
    assert_clean_error(lenet("eval", tmp_path / "nope"), "no such run directory")
    bad = tmp_path / "bad.png"
    bad.write_text("hello")
    assert_clean_error(lenet("predict", trained_run[0], bad), "bad.png")
    assert_clean_error(lenet("predict", trained_run[0], tmp_path / "missing.png"), "missing.png: no such file")


def test_cuda_asked_for_without_a_gpu():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert_clean_error(lenet("train", "--device", "cuda", "--no-save-model"), "--device cuda")


def test_no_data_offline_is_one_clear_line(trained_run, tmp_path):
    code = ("import sys, pathlib, lenet.data.sources as d; d.SYSTEM_DIR = pathlib.Path(sys.argv[1]); "
            "from lenet.cli import main; sys.exit(main(sys.argv[2:]))")  # fmt: skip
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "LENET_MIRRORS": "http://127.0.0.1:9/"}
    (tmp_path / "d").mkdir()
    proc = subprocess.run(
        [LENET[0], "-c", code, str(tmp_path / "none"), "eval", str(trained_run[0]), "--data-dir", str(tmp_path / "d")],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert_clean_error(proc, "fashion-mnist not found", "apt-get install dataset-fashion-mnist")


def test_untrusted_text_in_an_error_stays_on_one_line(tmp_path):
    """A tensor or file named with a newline, a damaged image: still one line on stderr."""
    import torch
    from safetensors.torch import save_file

    from lenet import create_model, save_model
    from lenet.runs.checkpoint import read_checkpoint

    path = save_model(create_model("lenet"), tmp_path / "m.safetensors")
    _, _, _, tensors, metadata = read_checkpoint(path)
    save_file({**tensors, "evil\nsecond line": torch.zeros(1)}, tmp_path / "x.safetensors",
              metadata=metadata)  # fmt: skip
    proc = lenet("eval", tmp_path / "x.safetensors", "--device", "cpu")
    assert_clean_error(proc, "unexpected", "\\n")
    png = tmp_path / "cut.png"
    Image.new("RGB", (64, 64), (200, 10, 10)).save(png)
    png.write_bytes(png.read_bytes()[:-30])  # the IEND chunk and part of the data gone
    assert_clean_error(lenet("predict", path, png, "--device", "cpu"), "cut.png")
    odd = tmp_path / "two\nlines.png"  # a file name is untrusted text too
    odd.write_bytes(b"not an image")
    assert_clean_error(lenet("predict", path, odd, "--device", "cpu"), "two\\nlines.png")


def test_several_seeds_print_their_statistics(tmp_path):
    proc = lenet("train", "--recipe", "seed", "--model", "lenet_bn", "--epochs", "1", "--batch-size", "512",
                 "--seeds", "2", "--seed", "3", "--no-report", "--out", tmp_path, "--name", "g")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    stats = json.loads((tmp_path / "g" / "seeds.json").read_text())
    assert [p.name for p in sorted((tmp_path / "g").iterdir())] == ["seed-3", "seed-4", "seeds.json"]
    assert proc.stdout.strip().splitlines()[-1].startswith(f"2 seeds: test accuracy mean {stats['mean']:.2%}")


def test_a_run_diverging_in_its_first_epoch_says_what_is_left(fmnist, tmp_path):
    from dataclasses import replace

    from lenet import TrainConfig, get_recipe, train
    from lenet.training.loop import TrainingDiverged

    recipe = replace(get_recipe("seed"), model="lenet_relu", lr=1e6, epochs=2)
    config = TrainConfig(recipe=recipe, device="cpu", out=str(tmp_path), name="boom", progress=False)
    with pytest.raises(TrainingDiverged, match=f"epoch 1; try a lower --lr; {tmp_path / 'boom'} holds only its config.json"):
        train(config, data=fmnist.subset(512, 64))
    assert sorted(p.name for p in (tmp_path / "boom").iterdir()) == ["config.json"]
    json.loads((tmp_path / "boom" / "config.json").read_text())  # strict JSON, whatever the run did
    assert_clean_error(lenet("eval", tmp_path / "boom"), "first epoch never finished", "--resume")
    assert_clean_error(lenet("compare", tmp_path / "boom", tmp_path / "boom"), "first epoch never finished")


def test_eval_of_a_run_without_weights_points_to_resume(trained_run, tmp_path):
    import shutil

    run = shutil.copytree(trained_run[0], tmp_path / "r")
    (run / "model.safetensors").unlink()
    assert_clean_error(lenet("eval", run), "without model.safetensors", f"lenet train --resume {run} writes them again")


def test_summary_of_a_trained_run_and_of_the_tutorials_model(trained_run):
    proc = lenet("summary", trained_run[0])
    assert proc.returncode == 0 and "predicts with" in proc.stdout and "total parameters" in proc.stdout
    plain = lenet("summary")
    assert "lenet (the tutorial's model)" in plain.stdout and "total parameters: 44,426" in plain.stdout
    assert plain.stdout.count("\n") < 25  # one row per layer: the views are not the network's


def test_json_files_are_strict(tmp_path):
    from lenet.core.files import write_json

    with pytest.raises(ValueError):
        write_json(tmp_path / "x.json", {"lr": float("inf")})
    assert not (tmp_path / "x.json").exists()


def test_a_cuda_index_is_a_device_name_everywhere(trained_run, tmp_path):
    import shutil

    import torch

    from lenet.training.resume import resume_config

    run = shutil.copytree(trained_run[0], tmp_path / "r")
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "device": "cuda:1"}))
    assert resume_config(run).device == "cuda:1"  # a resumed run keeps its GPU, index included
    if torch.cuda.is_available():
        pytest.skip("the refusal below is for a machine without CUDA")
    proc = lenet("train", "--device", "cuda:1", "--no-save-run")  # parsed, then refused: exit 1, not a usage error
    assert proc.returncode == 1 and "--device cuda:1 asked for" in proc.stderr


def test_predict_a_folder_into_a_csv_skipping_what_cannot_be_read(trained_run, fmnist, tmp_path):
    import csv

    folder = tmp_path / "photos"
    (folder / "inner").mkdir(parents=True)
    for i in range(3):
        Image.fromarray(fmnist.test_images[i, 0].numpy()).save(folder / ("inner" if i else ".") / f"{i}.png")
    (folder / "broken.png").write_text("not an image")
    (folder / "notes.txt").write_text("not named as an image")
    assert_clean_error(lenet("predict", trained_run[0], folder), "broken.png")  # refused unless told
    out = tmp_path / "p.csv"
    proc = lenet("predict", trained_run[0], folder, "--skip-bad", "--csv", out)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == (f"skipped 2 files: 1 not named as an image, 1 unreadable: {folder / 'notes.txt'} "
                                   f"(not named as an image), {folder / 'broken.png'} (not a PNG, JPEG, GIF, BMP, "
                                   "WEBP image Pillow can read)")
    rows = list(csv.DictReader(out.open()))
    assert [r["path"] for r in rows] == [str(folder / "0.png"), str(folder / "inner" / "1.png"),
                                         str(folder / "inner" / "2.png")]  # fmt: skip
    assert all(r["label"] in CLASSES and 0 < float(r["probability"]) <= 1 for r in rows)
    assert len(proc.stdout.splitlines()) == 3


def test_an_epoch_not_judged_says_so_in_its_line():
    from lenet.cli import _epoch_line
    from lenet.runs.metrics import EpochMetrics

    row = EpochMetrics(epoch=1, train_loss=0.5, train_accuracy=0.8, eval_split="val", eval_loss=None,
                       eval_accuracy=None, seconds=2.0, images_per_s=100.0, eval_seconds=0.0, lr=0.01)  # fmt: skip
    assert "val not evaluated (--eval-every)" in _epoch_line(row, 3)
    assert "val loss 0.4000 acc 85.00%" in _epoch_line(replace(row, eval_loss=0.4, eval_accuracy=0.85), 3)


def test_models_lists_every_model_recipe_and_data_set_in_one_aligned_column():
    from lenet.models.lenet import MODELS
    from lenet.training.recipes import RECIPES

    proc = lenet("models")
    assert proc.returncode == 0, proc.stderr
    rows = [line for line in proc.stdout.splitlines() if line.startswith("  ")]
    names = [row.split()[0] for row in rows]
    assert set(MODELS) | set(RECIPES) | set(DATASETS) | {"folder:PATH", "csv:PATH"} == set(names)
    # Each description starts one space after the longest name, whatever the name's length.
    column = 2 + max(map(len, names)) + 1
    assert all(row[column - 1] == " " and row[column] != " " for row in rows), rows
