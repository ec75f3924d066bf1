"""A user's own data (folder:, csv:): read only when the user names it, refused when it has changed,
its problems reported all at once, its labels bounded, runs on it compared only with their own kind.

Issue 26 (Security 3 and 5, Integrity 2) and issue 29 (the command line, items 1 and 2).
"""

import dataclasses
import json
import shutil

import pytest
import torch
from PIL import Image

import lenet.data.load
import lenet.data.user
from conftest import make_folder, write_csv
from lenet import TrainConfig, get_recipe, load, load_dataset, save_model, train
from lenet.cli import main
from lenet.core.errors import ServeError, DataError
from lenet.data.registry import MAX_CLASSES, DataSpec
from lenet.inference.serve import run_info
from lenet.models.lenet import create_model
from lenet.models.views import Classifier, Views


def one_line_error(capsys, command: str) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"lenet {command}: error:"), err
    return err[0]


# --- a checkpoint never chooses a path to read --------------------------------------------------


def crafted_run(tmp_path, data_name: str, classes=("a", "b")):
    """A run directory whose model.safetensors says it was trained on `data_name`: any path,
    written into the metadata by hand (nothing in lenet checks what a file claims)."""
    spec = DataSpec(data_name, classes, 0.5, 0.5)
    run = tmp_path / "crafted"
    run.mkdir()
    save_model(Classifier(create_model("lenet", data=spec), Views(), spec), run / "model.safetensors")
    (run / "config.json").write_text(json.dumps({"recipe_name": "x", "recipe": {"model": "lenet"}, "seed": 0,
                                                 "device": "cpu"}))  # fmt: skip
    (run / "metrics.csv").write_text("epoch,train_loss,train_accuracy,eval_split,eval_loss,eval_accuracy,seconds\n"
                                     "1,0.5,0.8,test,0.5,0.8,1.0\n")  # fmt: skip
    return run


@pytest.fixture
def reads(monkeypatch, kind):
    """Every `kind:` data set lenet reads, by path (each read is refused, so nothing runs on)."""
    seen = []

    def spy(path, *args, **kwargs):
        seen.append(path)
        raise DataError(f"read {path}")

    monkeypatch.setattr(lenet.data.user, f"load_{kind}", spy)
    return seen


@pytest.mark.parametrize("kind", ["folder", "csv"])
@pytest.mark.parametrize("command", [["eval"], ["report"], ["export", "--format", "torchscript"],
                                     ["serve", "--port", "0", "--runtime", "torch"]])
def test_a_checkpoint_naming_a_path_makes_no_command_read_it(tmp_path, capsys, reads, kind, command, monkeypatch):
    secret = make_folder(tmp_path / "secret", {"a": 5, "b": 5}) if kind == "folder" else write_csv(tmp_path / "s.csv", 9)
    run = crafted_run(tmp_path, f"{kind}:{secret}")
    target = run if command[0] == "report" else run / "model.safetensors"
    if command[0] == "serve":  # a run is served by itself (issue 38): stopped where it would listen, having read nothing
        from lenet.inference import serve as serving

        def stop(*args):
            raise ServeError(f"stopped where the server would listen: pass --dataset {kind}:{secret}, the path it was "
                             "trained from, is not needed")  # fmt: skip

        monkeypatch.setattr(serving, "bind", stop)
    assert main([command[0], str(target), *command[1:]]) == 1
    assert reads == []  # before the fix: [the secret path], read, and served at /samples/N.png
    assert f"pass --dataset {kind}:{secret}, the path it was trained from" in one_line_error(capsys, command[0])
    with pytest.raises(DataError):  # the spy sits where a read of that path goes, so its silence above means something
        lenet.data.load.load_dataset(f"{kind}:{secret}")
    assert len(reads) == 1


def test_model_info_shows_no_server_side_path(tmp_path):
    run = crafted_run(tmp_path, f"folder:{tmp_path / 'photos' / 'secret'}")
    info = run_info(run / "model.safetensors", load(run))
    assert str(tmp_path) not in json.dumps(info)
    assert info["data_set"] == "folder:secret" and info["checkpoint"] == "model.safetensors"


# --- a run on a folder refuses a folder that has changed ----------------------------------------


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory):
    """A short run on a folder data set: (the run directory, the folder, its final test figures)."""
    tmp = tmp_path_factory.mktemp("own")
    root = make_folder(tmp / "shapes", {"bars": 15, "blocks": 15})
    recipe = dataclasses.replace(get_recipe("seed"), model="lenet_bn", epochs=1, batch_size=8)
    result = train(TrainConfig(recipe=recipe, dataset=f"folder:{root}", device="cpu", out=str(tmp / "runs"),
                               name="own", progress=False))  # fmt: skip
    return result.run_dir, root, result.final


def test_a_run_on_a_folder_is_judged_on_it_only_when_named(folder_run, capsys):
    run, root, final = folder_run
    assert main(["eval", str(run)]) == 1
    assert f"pass --dataset folder:{root.resolve()}, the path it was trained from" in one_line_error(capsys, "eval")
    assert main(["eval", str(run), "--dataset", f"folder:{root}", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["correct"] == final.correct
    assert main(["report", str(run), "--dataset", f"folder:{root}"]) == 0
    assert f"test accuracy {final.accuracy:.2%}" in capsys.readouterr().out
    config = json.loads((run / "config.json").read_text())
    assert len(config["data"]["spec"]["sha256"]) == 64 and load(run).data.sha256 == config["data"]["spec"]["sha256"]


def test_a_folder_with_an_image_added_is_refused_naming_both_digests(tmp_path, capsys):
    root = make_folder(tmp_path / "shapes", {"bars": 15, "blocks": 15})
    recipe = dataclasses.replace(get_recipe("seed"), model="lenet", epochs=1, batch_size=8)
    run = train(TrainConfig(recipe=recipe, dataset=f"folder:{root}", device="cpu", out=str(tmp_path / "runs"),
                            name="own", progress=False)).run_dir  # fmt: skip
    assert main(["eval", str(run), "--dataset", f"folder:{root}"]) == 0
    assert capsys.readouterr().err.startswith("warning: only 6 test images")  # 30 images, 20% held out
    shutil.copy(root / "bars" / "0.png", root / "bars" / "extra.png")
    then, now = load(run).data.sha256, load_dataset(f"folder:{root}").spec.sha256
    assert then != now
    (run / "summary.json").unlink()  # as if killed before its last write, so that a resume would train on
    for command in (["eval"], ["report"], ["serve", "--port", "0"], ["export"], ["train", "--resume"]):
        assert main([*command, str(run), "--dataset", f"folder:{root}"]) == 1, command
        error = one_line_error(capsys, command[0])
        assert f"sha256 {then} then, {now} now" in error and "not the data the model was trained on" in error
    # Commands that show the run's own test set refuse the changed data wherever it now lies.
    moved = shutil.move(root, tmp_path / "moved")
    assert main(["report", str(run), "--dataset", f"folder:{moved}"]) == 1
    assert f"sha256 {then} then, {now} now" in one_line_error(capsys, "report")
    # So does eval, and any folder named is checked, not only the one the model was trained from (issue 36):
    # the figures would be of other images under the model's name.
    assert main(["eval", str(run), "--dataset", f"folder:{moved}"]) == 1
    assert f"sha256 {then} then, {now} now" in one_line_error(capsys, "eval")


def test_an_old_run_without_the_digest_in_its_checkpoint_takes_it_from_config_json(folder_run, tmp_path):
    run = shutil.copytree(folder_run[0], tmp_path / "old")
    model = load(run)
    save_model(Classifier(model.net, model.views, dataclasses.replace(model.data, sha256="")), run / "model.safetensors")
    assert load(run).data.sha256 == model.data.sha256  # the same digest, from the four tensor hashes


# --- lenet compare ------------------------------------------------------------------------------


def test_compare_shows_the_data_set_and_refuses_runs_on_different_ones(folder_run, tmp_path, capsys):
    run = folder_run[0]
    same = shutil.copytree(run, tmp_path / "same")
    assert main(["compare", str(run), str(same), "--out", str(tmp_path / "c.html")]) == 0
    lines = capsys.readouterr().out.splitlines()
    digest = load(run).data.sha256
    assert "data set" in lines[0] and f"folder:shapes sha256 {digest[:12]}" in lines[1]
    other = shutil.copytree(run, tmp_path / "fashion")
    config = json.loads((other / "config.json").read_text())
    config["data"] = {"name": "fashion-mnist"}
    (other / "config.json").write_text(json.dumps(config))
    assert main(["compare", str(run), str(other), "--out", str(tmp_path / "d.html")]) == 1
    error = one_line_error(capsys, "compare")
    assert "different data sets or test splits" in error and "fashion-mnist: fashion" in error
    assert not (tmp_path / "d.html").exists()


# --- CSV labels ---------------------------------------------------------------------------------


@pytest.mark.timeout(30)  # 10**12 built that many class names before (a hang), 10**7 ten million
@pytest.mark.parametrize("label", [2**70, 10**7, 10**12, MAX_CLASSES, -1])
def test_csv_labels_out_of_bounds_are_refused_naming_the_row(tmp_path, label):
    path = write_csv(tmp_path / "x.csv", 6)
    lines = path.read_text().splitlines()
    lines[3] = f"{label}," + lines[3].split(",", 1)[1]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=rf"x.csv, line 4: label {str(label)[:24]}.* is outside 0-{MAX_CLASSES - 1}"):
        load_dataset(f"csv:{path}")


# --- folder data sets: every problem at once, --skip-bad, links ---------------------------------


def test_a_folders_problems_come_in_one_error(tmp_path):
    root = make_folder(tmp_path / "set", {"a": 3, "b": 3})
    for i in range(12):
        (root / "a" / f"bad{i:02}.png").write_bytes(b"not an image")
    (tmp_path / "private.png").write_bytes((root / "a" / "0.png").read_bytes())
    (root / "b" / "link-out.png").symlink_to(tmp_path / "private.png")
    (root / "b" / "broken.png").symlink_to(tmp_path / "nowhere.png")
    (root / "c").mkdir()
    with pytest.raises(DataError) as info:
        load_dataset(f"folder:{root}")
    message = str(info.value)
    assert "\n" not in message
    assert "14 unreadable files: 12 not a PNG, JPEG, GIF, BMP, WEBP image Pillow can read (a/bad00.png, " in message
    assert "a/bad09.png, and 2 more)" in message and "a/bad10.png" not in message  # the first 10, then a count
    assert "1 a broken link (b/broken.png); 1 a link to outside the folder (b/link-out.png)" in message
    assert "1 class without a readable image (c)" in message
    shutil.rmtree(root / "c")
    with pytest.raises(DataError, match="14 unreadable files: .*; pass --skip-bad"):
        load_dataset(f"folder:{root}")
    data = load_dataset(f"folder:{root}", skip_bad=True)
    assert len(data.train_labels) + len(data.test_labels) == 6 and len(data.skipped) == 14


def test_links_within_the_folder_are_followed_and_a_class_linked_out_is_refused(tmp_path):
    root = make_folder(tmp_path / "set", {"a": 3, "b": 3})
    (root / "a" / "again.png").symlink_to(root / "b" / "0.png")
    data = load_dataset(f"folder:{root}")
    assert len(data.train_labels) + len(data.test_labels) == 7
    outside = make_folder(tmp_path / "elsewhere", {"c": 3})
    (root / "c").symlink_to(outside / "c")
    with pytest.raises(DataError, match=r"1 a link to outside the folder \(c\); and 1 class without a readable image \(c\)"):
        load_dataset(f"folder:{root}", skip_bad=True)


def test_train_skip_bad_trains_on_the_readable_images_and_records_the_rest(tmp_path, capsys):
    root = make_folder(tmp_path / "set", {"a": 12, "b": 12})
    (root / "a" / "bad.png").write_text("not an image")
    (tmp_path / "private.png").write_bytes((root / "a" / "0.png").read_bytes())
    (root / "b" / "link.png").symlink_to(tmp_path / "private.png")
    args = ["train", "--dataset", f"folder:{root}", "--model", "lenet", "--epochs", "1", "--batch-size", "8",
            "--device", "cpu", "--no-progress", "--no-report", "--out", str(tmp_path / "runs"), "--name", "r"]  # fmt: skip
    assert main(args) == 1
    assert "2 unreadable files: 1 not a PNG" in one_line_error(capsys, "train")
    assert main([*args, "--skip-bad"]) == 0
    err = capsys.readouterr().err
    assert "left out 2 unreadable files: a/bad.png: not a" in err and "b/link.png: a link to outside the folder" in err
    record = json.loads((tmp_path / "runs" / "r" / "config.json").read_text())["data"]
    assert record["skip_bad"] is True and record["skipped_count"] == 2 and record["skipped"][1].startswith("b/link.png")
    summary = json.loads((tmp_path / "runs" / "r" / "summary.json").read_text())
    assert summary["test"]["total"] == round(0.2 * 24)  # 24 readable images, 20% held out
    # Judged later on the same folder, its bad files are left out again, and the digest says it is the same data.
    assert main(["eval", str(tmp_path / "runs" / "r"), "--dataset", f"folder:{root}"]) == 0


def test_mixed_sizes_and_modes_in_one_folder(tmp_path):
    root = tmp_path / "set"
    for name, images in {"a": [Image.new("L", (5, 90), 200), Image.new("RGBA", (28, 28))],
                         "b": [Image.new("I;16", (300, 20), 40000), Image.new("P", (1, 1))]}.items():  # fmt: skip
        (root / name).mkdir(parents=True)
        for i, image in enumerate(images):
            image.save(root / name / f"{i}.png")
    data = load_dataset(f"folder:{root}")
    assert torch.cat([data.train_images, data.test_images]).shape == (4, 1, 28, 28)
