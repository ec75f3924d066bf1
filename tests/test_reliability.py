"""Issue 3's guarantees: augmentation, validation split, seed statistics, stuck and diverged runs."""

import importlib
import json
import types
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from lenet import TrainConfig, get_recipe, load, train
from lenet.data.batches import holdout
from lenet.training.augment import augment
from lenet.core.errors import DataError
from lenet.core.text import rounded
from lenet.training.metrics import evaluate
from lenet.models.views import Classifier, Views
from lenet.training.loop import TrainingDiverged
from lenet.training.seeds import train_seeds


def _config(tmp_path, name="run", **recipe):
    base = replace(get_recipe("default"), **{"model": "lenet_bn", "epochs": 1, "batch_size": 128, **recipe})
    return TrainConfig(recipe=base, device="cpu", out=str(tmp_path), name=name, progress=False)


def test_shift_reads_a_window_of_the_zero_padded_image():
    x = torch.randint(1, 256, (64, 1, 28, 28), dtype=torch.uint8)
    y = augment(x, 2, False, torch.Generator().manual_seed(0))
    padded = F.pad(x, (2, 2, 2, 2))
    offsets = set()
    for i in range(64):
        found = [(a, b) for a in range(5) for b in range(5) if torch.equal(padded[i, 0, a : a + 28, b : b + 28], y[i, 0])]
        assert len(found) == 1
        offsets.add(found[0])
    assert len(offsets) > 10  # offsets really vary per image


def test_flip_mirrors_about_half_the_batch():
    x = torch.rand(1000, 1, 28, 28)
    y = augment(x, 0, True, torch.Generator().manual_seed(0))
    mirrored = sum(torch.equal(y[i], x[i].flip(-1)) for i in range(1000))
    assert 400 < mirrored < 600
    assert all(torch.equal(y[i], x[i]) or torch.equal(y[i], x[i].flip(-1)) for i in range(1000))


def test_holdout_is_disjoint_and_fixed():
    images = torch.arange(100).view(100, 1, 1, 1).expand(100, 1, 28, 28)
    labels = torch.arange(100)
    (tx, ty), (vx, vy) = holdout(images, labels, 20)
    assert len(vy) == 20 and len(ty) == 80 and set(ty.tolist()).isdisjoint(vy.tolist())
    assert torch.equal(holdout(images, labels, 20)[1][1], vy)
    with pytest.raises(DataError):
        holdout(images, labels, 100)


def _classifier(**views):
    from lenet import create_model
    from lenet.models.views import Classifier, Views

    torch.manual_seed(0)
    return Classifier(create_model("lenet_bn"), Views(**views)).eval()


def test_flip_view_averages_image_and_mirror():
    model = _classifier(flip=True)
    net, x = model.net, torch.rand(5, 1, 28, 28)
    with torch.no_grad():
        expected = (net(x) + net(x.flip(-1))) / 2
        assert torch.allclose(model(x), expected, atol=1e-6)


def test_shift_views_average_the_moved_images_and_their_mirrors():
    from lenet.models.views import Classifier, Views

    model = _classifier(flip=True, shift=1)
    net, x = model.net, torch.rand(3, 1, 28, 28)
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1))
    # Each view by hand: the image moved down, up, right and left, the vacated pixels zero.
    moved = [x, padded[..., :28, 1:29], padded[..., 2:, 1:29], padded[..., 1:29, :28], padded[..., 1:29, 2:]]
    assert moved[1][..., 0, :].abs().sum() == 0 and torch.equal(moved[1][..., 1:, :], x[..., :-1, :])
    with torch.no_grad():
        expected = sum(net(v) + net(v.flip(-1)) for v in moved) / 10
        assert torch.allclose(model(x), expected, atol=1e-6)
        assert not torch.allclose(model(x), (net(x) + net(x.flip(-1))) / 2, atol=1e-4)
        without_flip = Classifier(net, Views(shift=1)).eval()
        assert torch.allclose(without_flip(x), sum(map(net, moved)) / 5, atol=1e-6)
        assert torch.equal(model.train()(x), net(x))  # training sees one view


def test_the_network_runs_once_per_forward_whatever_the_views():
    """Hooks inside the network see one pass: ten views are the wrapper's business."""
    model = _classifier(flip=True, shift=1)
    calls = []
    model.net.conv[0].register_forward_hook(lambda m, i, o: calls.append(o.shape[0]))
    with torch.no_grad():
        model.net(torch.rand(4, 1, 28, 28))
        assert calls == [4]
        model(torch.rand(4, 1, 28, 28))
    assert calls == [4] + [8] * 5  # the wrapper: five passes of image and mirror


def test_val_split_is_recorded_and_test_is_still_reported(fmnist, tmp_path):
    data = fmnist.subset(3000, 1000)
    result = train(replace(_config(tmp_path), val_split=500), data=data)
    assert result.history[0].eval_split == "val"
    config = json.loads((result.run_dir / "config.json").read_text())
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert config["val_split"] == 500 and config["eval_split"] == "val"
    assert summary["val"]["accuracy"] == result.val.accuracy and summary["test"]["total"] == 1000
    # Per epoch the model skips its shifted test-time views (for speed); the final figures use them all.
    (_, _), (val_x, val_y) = holdout(data.train_images, data.train_labels, 500)
    assert result.model.views.shift == 1 and evaluate(result.model, val_x, val_y).accuracy == result.val.accuracy
    mirrors_only = Classifier(result.model.net, Views(flip=True))
    assert evaluate(mirrors_only, val_x, val_y).accuracy == result.history[-1].eval_accuracy
    assert "val" in (result.run_dir / "metrics.csv").read_text().splitlines()[1]


def test_several_seeds_give_statistics(fmnist, tmp_path):
    data = fmnist.subset(2000, 500)
    results, stats = train_seeds(_config(tmp_path, name="group"), 3, data=data)
    accuracies = [r.final.accuracy for r in results]
    assert stats["runs"] == 3 and stats["accuracies"] == accuracies
    assert abs(stats["mean"] - sum(accuracies) / 3) < 1e-12
    assert stats["min"] == min(accuracies) and stats["max"] == max(accuracies)
    assert abs(stats["std"] - torch.tensor(accuracies, dtype=torch.float64).std().item()) < 1e-12
    saved = json.loads((tmp_path / "group" / "seeds.json").read_text())
    assert saved["mean"] == rounded(stats["mean"]) and len(repr(saved["mean"])) <= 9  # 0.56, not 0.5599999999999999
    assert sorted(p.name for p in (tmp_path / "group").iterdir()) == [
        "seed-0", "seed-1", "seed-2", "seeds.json"
    ]  # fmt: skip


def test_a_stuck_run_is_reported_with_its_cause(fmnist, tmp_path):
    """Sigmoid LeNet under a far too large Adam step saturates and stays at chance."""
    data = fmnist.subset(2000, 1000)
    seen = []
    config = replace(_config(tmp_path, model="lenet", optimizer="adam", lr=1.0, schedule="constant",
                             label_smoothing=0.0, shift=0, flip=False, test_flip=False))  # fmt: skip
    result = train(config, data=data, on_warning=seen.append)
    assert result.final.accuracy < 0.15
    assert len(seen) == 1 and "chance" in seen[0] and "--recipe default" in seen[0]
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert summary["stuck"] is True and summary["warnings"] == seen


def test_a_healthy_run_is_not_called_stuck(fmnist, tmp_path):
    result = train(_config(tmp_path), data=fmnist.subset(3000, 1000))
    assert result.warnings == [] and result.final.accuracy > 0.5


def test_non_finite_loss_stops_and_keeps_the_last_good_weights(fmnist, tmp_path, monkeypatch):
    data = fmnist.subset(1024, 256)
    config = _config(tmp_path, epochs=3, batch_size=256, schedule="constant")
    calls = {"n": 0}
    real = F.cross_entropy

    def poisoned(*args, **kwargs):  # the 6th step (in epoch 2) produces a NaN loss
        calls["n"] += 1
        loss = real(*args, **kwargs)
        return loss * float("nan") if calls["n"] == 6 else loss

    monkeypatch.setattr(importlib.import_module("lenet.training.objective"), "F", types.SimpleNamespace(cross_entropy=poisoned))
    with pytest.raises(TrainingDiverged, match="epoch 2.*weights of epoch 1 are in .*run"):
        train(config, data=data)
    model = load(tmp_path / "run")
    assert all(torch.isfinite(p).all() for p in model.parameters())
    rows = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    assert len(rows) == 2 and rows[1].startswith("1,")  # header and epoch 1 only
