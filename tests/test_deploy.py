"""A run is deployable by itself (issue 38, item 1): served, predicted with and exported with nothing but
the run, its own data set deleted; what reads the data again (eval, report, resume) still asks for it."""

from __future__ import annotations

import dataclasses
import io
import shutil

import pytest
import torch
from PIL import Image

from conftest import make_folder
from lenet import TrainConfig, get_recipe, train
from lenet.cli import main
from lenet.runs.samples import SAMPLES_FILE, SAMPLES_PER_CLASS, read_samples


@pytest.fixture(scope="module")
def orphan(tmp_path_factory):
    """A run on a folder of three classes, the folder then deleted."""
    tmp = tmp_path_factory.mktemp("deploy")
    root = make_folder(tmp / "shapes", {"bars": 12, "blocks": 12, "stripes": 12})
    recipe = dataclasses.replace(get_recipe("seed"), model="lenet_bn", epochs=1, batch_size=8)
    run = train(TrainConfig(recipe=recipe, dataset=f"folder:{root}", device="cpu", out=str(tmp), name="run",
                            progress=False)).run_dir  # fmt: skip
    image = Image.open(next((root / "bars").iterdir())).copy()
    shutil.rmtree(root)
    return run, image


def png_bytes(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_run_keeps_a_few_test_images_of_each_class(orphan):
    run, _ = orphan
    images, labels = read_samples(run, 3)
    assert images.dtype == torch.uint8 and tuple(images.shape[1:]) == (1, 28, 28)
    counts = torch.bincount(labels, minlength=3).tolist()
    assert all(1 <= n <= SAMPLES_PER_CLASS for n in counts), counts  # 20% of 12 a class held out as test images


def test_a_run_whose_folder_is_gone_is_served_and_answers_predict_and_layers(orphan):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from lenet.inference.export import checking_data
    from lenet.inference.serve import DEFAULTS, create_app, run_info, serving_model
    from lenet.runs.checkpoint import load, resolve_weights

    run, image = orphan
    weights = resolve_weights(run)
    model = load(weights)
    data = checking_data(model, run, None, None, own=True)  # serve's own steps, the folder not named
    assert data is not None and str(data.source).endswith(SAMPLES_FILE)
    model, note = serving_model(model, DEFAULTS, data)
    app = create_app(model, run_info(weights, model), data.test_images, data.test_labels, DEFAULTS)
    with TestClient(app) as client:
        answer = client.post("/predict", files=[("files", ("bar.png", png_bytes(image), "image/png"))])
        assert answer.status_code == 200, answer.text
        assert answer.json()["predictions"][0]["label"] in ("bars", "blocks", "stripes")
        layers = client.post("/layers", files=[("files", ("bar.png", png_bytes(image), "image/png"))])
        assert layers.status_code == 200, layers.text
        samples = client.get("/samples").json()
        assert samples and {s["label"] for s in samples} <= {"bars", "blocks", "stripes"}
        assert client.get(samples[0]["url"]).status_code == 200


def test_predict_and_export_need_nothing_but_the_run_and_eval_still_asks_for_the_data(orphan, tmp_path, capsys):
    run, image = orphan
    copy = shutil.copytree(run, tmp_path / "run")
    picture = tmp_path / "bar.png"
    image.save(picture)
    assert main(["predict", str(copy), str(picture), "--top-k", "1"]) == 0
    pytest.importorskip("onnxruntime")
    assert main(["export", str(copy)]) == 0
    assert "kept with the run" in capsys.readouterr().err
    assert (copy / "model.onnx").is_file()
    assert main(["eval", str(copy)]) == 1  # the figures of a test set need the test set
    assert "--dataset folder:" in capsys.readouterr().err


def test_an_exported_onnx_file_is_served_by_itself_with_its_sidecar(orphan, tmp_path):
    """`lenet serve model.onnx`: ONNX Runtime answers as the run does, without PyTorch's checkpoint; no layer view;
    a file that is not the one its sidecar describes is refused."""
    pytest.importorskip("fastapi")
    pytest.importorskip("onnxruntime")
    from fastapi.testclient import TestClient

    from lenet.core.errors import ServeError
    from lenet.inference.export import export
    from lenet.inference.serve import DEFAULTS, exported_app
    from lenet.inference.predict import predict
    from lenet.runs.checkpoint import load

    run, image = orphan
    copy = shutil.copytree(run, tmp_path / "run")
    onnx = export(copy, "onnx").path
    deployed = shutil.copytree(copy, tmp_path / "deployed", ignore=lambda d, names: [n for n in names if not n.startswith("model.onnx")])
    assert sorted(p.name for p in deployed.iterdir()) == ["model.onnx", "model.onnx.json"]
    with TestClient(exported_app(deployed / onnx.name, DEFAULTS)) as client:
        answer = client.post("/predict", files=[("files", ("bar.png", png_bytes(image), "image/png"))])
        assert answer.status_code == 200, answer.text
        picture = tmp_path / "bar.png"
        image.save(picture)
        from lenet.data.images import load_image

        expected = predict(load(copy), load_image(picture).unsqueeze(0), top_k=1)[0]
        assert answer.json()["predictions"][0]["label"] == expected.label
        info = client.get("/model").json()
        assert "exported file model.onnx" in info["runtime"] and info["classes"] == ["bars", "blocks", "stripes"]
        assert client.post("/layers", files=[("files", ("bar.png", png_bytes(image), "image/png"))]).status_code in (404, 405)
    (deployed / "model.onnx").write_bytes((deployed / "model.onnx").read_bytes() + b"\0")
    with pytest.raises(ServeError, match="is not the file model.onnx.json describes"):
        exported_app(deployed / "model.onnx", DEFAULTS)
