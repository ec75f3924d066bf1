"""Starting from a run's weights (--start-from: fine-tuning on other data, or a finished run taken further)
and early stopping on the validation split (--patience)."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest
import torch

from conftest import make_folder
from lenet import TrainConfig, get_recipe, load, train
from lenet.cli import main
from lenet.core.errors import Interrupted, LenetError
from lenet.data.load import load_dataset
from lenet.training.resume import resume_config
from lenet.training.start import check_start, read_parent, take_weights


def _config(tmp_path, name, **fields):
    recipe = dataclasses.replace(get_recipe("default"), model="lenet_bn", epochs=2, batch_size=128)
    return TrainConfig(recipe=recipe, device="cpu", out=str(tmp_path), name=name, progress=False, **fields)


@pytest.fixture(scope="module")
def parent(fmnist, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("parent")
    return train(_config(tmp, "parent"), data=fmnist.subset(2000, 500)).run_dir


def test_a_new_last_layer_for_other_classes_and_every_other_weight_the_parents(parent, tmp_path):
    from lenet.training.build import build_model

    folder = load_dataset(f"folder:{make_folder(tmp_path / 'shapes', {'bars': 8, 'blocks': 8, 'dots': 8})}")
    recipe = _config(tmp_path, "x").recipe
    source = read_parent(str(parent))
    assert "a new last layer for the 3 classes" in check_start(source, recipe, folder.spec)
    assert "(it knew 10)" in check_start(source, recipe, folder.spec)
    model = build_model(recipe, folder.spec)
    take_weights(model, source)
    mine, theirs = model.net.state_dict(), source.model.net.state_dict()
    differ = sorted(k for k in mine if mine[k].shape != theirs[k].shape)
    last = [name for name, module in model.net.named_modules() if isinstance(module, torch.nn.Linear)][-1]
    assert differ == [f"{last}.bias", f"{last}.weight"]
    assert all(torch.equal(mine[k], theirs[k]) for k in mine if k not in differ)
    assert source.record.sha256 == __import__("hashlib").sha256((parent / "model.safetensors").read_bytes()).hexdigest()


def test_fine_tuning_on_a_folder_records_its_parent_and_a_resume_never_reads_it(parent, tmp_path):
    root = make_folder(tmp_path / "shapes", {"bars": 10, "blocks": 10})
    data = load_dataset(f"folder:{root}")
    copy = shutil.copytree(parent, tmp_path / "copy")
    config = dataclasses.replace(_config(tmp_path, "tuned", dataset=f"folder:{root}", start_from=str(copy)),
                                 recipe=dataclasses.replace(_config(tmp_path, "x").recipe, batch_size=4))

    def stop(row):
        raise KeyboardInterrupt

    with pytest.raises(Interrupted):
        train(config, data=data, on_epoch=stop)
    record = json.loads((tmp_path / "tuned" / "config.json").read_text())["start_from"]
    assert record["data"] == "fashion-mnist" and len(record["classes"]) == 10 and record["epochs"] == 2
    shutil.rmtree(copy)  # the parent gone: the resume goes on from the run's own state
    resumed = train(resume_config(tmp_path / "tuned", progress=False), data=data, resume=tmp_path / "tuned")
    assert len(resumed.history) == 2 and load(resumed.run_dir).data.classes == ("bars", "blocks")


def test_a_finished_run_goes_further_as_a_new_run_with_its_recipe(parent, tmp_path, capsys, monkeypatch):
    small = load_dataset("fashion-mnist").subset(2000, 500)
    monkeypatch.setattr("lenet.data.load.load_dataset", lambda *a, **k: small)
    code = main(["train", "--start-from", str(parent), "--epochs", "3", "--out", str(tmp_path), "--name", "more",
                 "--no-report", "--no-progress", "--threads", "1"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0 and f"starting from {parent.resolve()} (fashion-mnist, 2 epochs): all its weights" in out
    saved, theirs = (json.loads((d / "config.json").read_text()) for d in (tmp_path / "more", parent))
    assert saved["recipe"] == {**theirs["recipe"], "epochs": 3}
    assert saved["start_from"]["path"] == str(parent.resolve()) and saved["recipe_name"] == theirs["recipe_name"]


def test_another_architecture_is_refused_in_one_line(parent, tmp_path, capsys):
    assert main(["train", "--start-from", str(parent), "--recipe", "seed", "--out", str(tmp_path), "--no-progress"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not the recipe's lenet" in err[0] and not (tmp_path / "seed").exists()


def test_early_stopping_stops_on_the_validation_split_and_says_so(fmnist, tmp_path):
    data = fmnist.subset(1500, 300)
    with pytest.raises(LenetError, match="add --val-split N"):
        train(_config(tmp_path, "no-val", patience=1), data=data)
    # lr 1e-9 without batch norm learns nothing: the accuracy never improves on epoch 1's, so a patience of 2
    # stops after epoch 3.
    config = _config(tmp_path, "stopped", patience=2, val_split=300)
    config = dataclasses.replace(config, recipe=dataclasses.replace(config.recipe, model="lenet", epochs=6, lr=1e-9,
                                                                    schedule="constant"))  # fmt: skip
    result = train(config, data=data)
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert len(result.history) == 3 and summary["stopped_early"] == 3 and summary["best_epoch"] == 1
    assert json.loads((result.run_dir / "config.json").read_text())["patience"] == 2
    pytest.importorskip("matplotlib")
    from lenet.insight.report import write_report

    page = write_report(result.run_dir, data).path.read_text()
    assert "3 of 6: stopped early, no better validation accuracy in the 2 judged epochs after epoch 1" in page
