"""Other data sets: MNIST and KMNIST through the registry (small generated IDX sets on a local
mirror, checked against their own checksums), your own folders and CSV files, and models that
carry their data set's classes into eval, predict, export and serve."""

import dataclasses
import gzip
import hashlib
import json

import pytest
import torch
from PIL import Image

from conftest import idx_bytes, make_folder, write_csv
from lenet import TrainConfig, get_recipe, load, load_dataset, predict, train
from lenet.cli import main
from lenet.data.registry import DATASETS, DEFAULT_SPEC, IdxFile
from lenet.core.errors import DataError
from test_download import Files, server  # noqa: F401  (the loopback HTTP mirror)

STEMS = {"train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
         "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte"}  # fmt: skip


def digit_like_set(n_train=600, n_test=200, seed=0) -> dict[str, bytes]:
    """Ten classes told apart by where a bright bar stands: learnable in one short epoch."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        labels = torch.randint(0, 10, (n,), generator=g, dtype=torch.uint8)
        images = torch.randint(0, 40, (n, 28, 28), generator=g, dtype=torch.uint8)
        for i, label in enumerate(labels.tolist()):
            images[i, 2 + 2 * label : 4 + 2 * label, 4:24] = 250
        out[f"{split}_images"], out[f"{split}_labels"] = idx_bytes(images), idx_bytes(labels)
    return out


@pytest.fixture
def local_mnist(server, tmp_path, monkeypatch):  # noqa: F811
    """The `mnist` entry with a generated set's checksums, served by a mirror on loopback."""
    _, url = server
    plain = digit_like_set()
    for key, raw in plain.items():
        Files.routes[f"/m/{STEMS[key]}.gz"] = ("ok", gzip.compress(raw))
    files = {key: IdxFile(STEMS[key], hashlib.sha256(raw).hexdigest()) for key, raw in plain.items()}
    monkeypatch.setitem(DATASETS, "mnist", dataclasses.replace(DATASETS["mnist"], files=files))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("LENET_DATA_DIR", raising=False)
    monkeypatch.setenv("LENET_MIRRORS", url + "/m")
    monkeypatch.setattr("lenet.data.sources.SYSTEM_DIR", tmp_path / "no-system-copy")
    return plain


def test_mnist_downloads_verifies_and_knows_its_classes(local_mnist, tmp_path):
    data = load_dataset("mnist")
    assert data.source == str(tmp_path / "cache" / "lenet" / "mnist")
    assert data.spec.name == "mnist" and data.spec.classes == tuple("0123456789")
    pixels = data.train_images.double() / 255
    assert data.spec.mean == round(pixels.mean().item(), 4) and data.spec.std == round(pixels.std().item(), 4)
    assert len(data.test_labels) == 200 and data.sha256["t10k-labels-idx1-ubyte"] == hashlib.sha256(
        local_mnist["test_labels"]).hexdigest()


def test_a_gz_checksum_alone_is_enough_and_a_wrong_file_is_refused(tmp_path, monkeypatch):
    """KMNIST publishes only the SHA-256s of its .gz files."""
    plain = digit_like_set(seed=1)
    for key, raw in plain.items():
        (tmp_path / f"{STEMS[key]}.gz").write_bytes(gzip.compress(raw, mtime=0))
    files = {key: IdxFile(STEMS[key], "", hashlib.sha256((tmp_path / f"{STEMS[key]}.gz").read_bytes()).hexdigest())
             for key in plain}  # fmt: skip
    monkeypatch.setitem(DATASETS, "kmnist", dataclasses.replace(DATASETS["kmnist"], files=files))
    data = load_dataset("kmnist", tmp_path, download=False)
    assert data.spec.classes[:3] == ("o", "ki", "su")
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(plain["test_labels"][:-1] + b"\x01"))
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz: SHA-256 .* not the known kmnist file"):
        load_dataset("kmnist", tmp_path, download=False)


def test_the_default_spec_is_what_loading_fashion_mnist_measures(fmnist):
    """create_model() without data normalises by the registry's Fashion-MNIST statistics: the measured ones."""
    assert fmnist.spec == DEFAULT_SPEC


def test_unknown_data_set_is_one_line():
    with pytest.raises(DataError, match="unknown data set 'svhn'; choose from fashion-mnist, mnist, kmnist, cifar10"):
        load_dataset("svhn")


def test_a_model_trained_on_mnist_is_judged_on_mnist(local_mnist, tmp_path, capsys):
    recipe = dataclasses.replace(get_recipe("seed"), model="lenet_bn", epochs=1, batch_size=50)
    config = TrainConfig(recipe=recipe, dataset="mnist", device="cpu", out=str(tmp_path / "runs"), name="m",
                         progress=False)  # fmt: skip
    result = train(config)
    assert result.final.accuracy > 0.5 and result.final.classes == tuple("0123456789")
    run_config = json.loads((result.run_dir / "config.json").read_text())
    assert run_config["data"]["name"] == "mnist" and run_config["data"]["spec"]["classes"] == list("0123456789")
    model = load(result.run_dir)
    assert model.data.name == "mnist" and model.net.config.input_mean == load_dataset("mnist").spec.mean
    assert main(["eval", str(result.run_dir), "--json", "--device", "cpu"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["data_set"] == "mnist" and out["total"] == 200 and set(out["per_class_accuracy"]) == set("0123456789")
    assert out["correct"] == result.final.correct


# --- your own images ----------------------------------------------------------------------------


def test_a_folder_of_class_folders_is_a_data_set(tmp_path):
    from lenet.data.images import load_image

    root = make_folder(tmp_path / "shapes", {"bars": 10, "blocks": 10, "lines": 10})
    data = load_dataset(f"folder:{root}")
    assert data.spec.classes == ("bars", "blocks", "lines") and data.spec.name == f"folder:{root.resolve()}"
    assert len(data.train_labels) == 24 and len(data.test_labels) == 6  # 20% held out, seed 0
    assert torch.equal(load_dataset(f"folder:{root}").test_labels, data.test_labels)  # the same split each time
    everything = torch.cat([data.train_images, data.test_images])
    assert any(torch.equal(load_image(root / "bars" / "0.png"), img) for img in everything)  # predict's preprocessing


def test_a_folder_with_train_and_test_keeps_its_split(tmp_path):
    make_folder(tmp_path / "set" / "train", {"a": 4, "b": 4})
    make_folder(tmp_path / "set" / "test", {"a": 2, "b": 2})
    data = load_dataset(f"folder:{tmp_path / 'set'}")
    assert len(data.train_labels) == 8 and len(data.test_labels) == 4 and "train/ and test/" in data.source


@pytest.mark.parametrize("problem, fragment", [
    ("empty class", r"1 class without a readable image \(b\)"),
    ("one class", r"at least two \(only 'a' found\)"),
    ("unreadable", r"1 unreadable file: 1 not a PNG, .* \(a/bad.png\); pass --skip-bad"),
    ("unbalanced", "class 'b' has 1 images against 12"),
    ("missing", "no such directory"),
])  # fmt: skip
def test_bad_folders_are_one_line(tmp_path, problem, fragment):
    root = tmp_path / "set"
    if problem == "empty class":
        make_folder(root, {"a": 3})
        (root / "b").mkdir()
    elif problem == "one class":
        make_folder(root, {"a": 3})
    elif problem == "unreadable":
        make_folder(root, {"a": 3, "b": 3})
        (root / "a" / "bad.png").write_text("not an image")
    elif problem == "unbalanced":
        make_folder(root, {"a": 12, "b": 1})
    with pytest.raises(DataError, match=fragment) as info:
        load_dataset(f"folder:{root}")
    assert "\n" not in str(info.value)


def test_csv_files_in_kaggles_form(tmp_path):
    write_csv(tmp_path / "fashion-mnist_train.csv", 30)
    write_csv(tmp_path / "fashion-mnist_test.csv", 9, header=False, seed=1)
    (tmp_path / "classes.txt").write_text("zero\none\ntwo\n")
    data = load_dataset(f"csv:{tmp_path}")
    assert len(data.train_labels) == 30 and len(data.test_labels) == 9 and data.spec.classes == ("zero", "one", "two")
    row = (tmp_path / "fashion-mnist_train.csv").read_text().splitlines()[1].split(",")
    assert data.train_images[0, 0].flatten().tolist() == [int(v) for v in row[1:]] and data.train_labels[0] == int(row[0])
    (tmp_path / "one").mkdir()
    single = load_dataset(f"csv:{write_csv(tmp_path / 'one' / 'all.csv', 20)}")
    assert len(single.train_labels) == 16 and single.spec.classes == ("0", "1", "2")


def test_a_csv_row_of_the_wrong_length_names_its_line(tmp_path):
    path = write_csv(tmp_path / "x.csv", 5)
    lines = path.read_text().splitlines()
    lines[3] = lines[3].rsplit(",", 1)[0]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match="x.csv, line 4: 784 columns, expected a label and 784 pixels"):
        load_dataset(f"csv:{path}")


def test_a_model_of_your_own_classes_predicts_their_names(tmp_path):
    root = make_folder(tmp_path / "shapes", {"bars": 20, "blocks": 20})
    recipe = dataclasses.replace(get_recipe("seed"), model="lenet_bn", epochs=2, batch_size=8)
    result = train(TrainConfig(recipe=recipe, dataset=f"folder:{root}", device="cpu", out=str(tmp_path / "runs"),
                               name="own", progress=False))  # fmt: skip
    model = load(result.run_dir)
    assert model.data.classes == ("bars", "blocks") and model.net.config.num_classes == 2
    from lenet.data.images import load_image

    guess = predict(model, load_image(root / "blocks" / "3.png").unsqueeze(0), top_k=2)[0]
    assert {name for name, _ in guess.top} == {"bars", "blocks"}
