"""The inference side in colour (issue 37): predict, export (ONNX, int8) and serve a model of 3x32x32 images."""

import io
import json
import subprocess

import pytest
import torch
from PIL import Image, ImageDraw

from conftest import LENET
from benchmarks.colour import HUES

from lenet import load, predict
from lenet.data.images import decode_image, load_image, prepared
from lenet.inference.export import export
from lenet.inference.export import checking_data
from lenet.inference.serve import create_app, exported_app, run_info
from lenet.inference.settings import DEFAULTS
from lenet.runs.checkpoint import resolve_weights

SHAPE = (3, 32, 32)


def photo(path, colour, size=(60, 40)) -> "Path":
    """A disc of `colour` on a light ground, wider than high: a picture that must be resized and centre-cropped."""
    img = Image.new("RGB", size, (240, 238, 235))
    ImageDraw.Draw(img).ellipse((18, 8, 42, 32), fill=colour)
    img.save(path)
    return path


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    return [photo(folder / f"{name}.png", colour) for name, colour in HUES.items()]


def expected_answers(run, paths) -> list:
    """The model's answers on each picture prepared in its shape (RGB, resized, centre-cropped)."""
    images = []
    for path in paths:
        with Image.open(path) as img:
            images.append(prepared(img, 3, 32))
    return predict(load(run), torch.stack(images), top_k=3)


def test_predict_reads_pictures_in_the_models_colour_and_side(colour_run, photos):
    run, _ = colour_run
    result = subprocess.run([*LENET, "predict", str(run), *map(str, photos), "--json"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    got = json.loads(result.stdout)["predictions"]
    expected = expected_answers(run, photos)
    assert [g["label"] for g in got] == [p.label for p in expected]
    for g, p in zip(got, expected):
        assert [t["probability"] for t in g["top"]] == pytest.approx([q for _, q in p.top], abs=1e-6)
    assert [g["label"] for g in got] == list(HUES)  # red, green and blue discs, told apart by colour alone


# --- export -----------------------------------------------------------------------------------


def onnx_input_dims(path) -> list:
    import onnx

    (given,) = onnx.load(str(path)).graph.input
    return [d.dim_param or d.dim_value for d in given.type.tensor_type.shape.dim]


def ort_logits(path, images: torch.Tensor) -> torch.Tensor:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(["logits"], {"image": (images.float() / 255).numpy()})[0])


def test_onnx_export_of_a_colour_run_takes_its_shape_and_agrees_with_pytorch(colour_run, photos, tmp_path):
    run, _ = colour_run
    result = export(run, "onnx", tmp_path / "discs.onnx")
    assert result.verification.passed and result.verification.images > 0
    assert onnx_input_dims(result.path) == ["batch", *SHAPE]
    pre = json.loads(result.sidecar.read_text())["preprocessing"]
    assert pre["input"]["shape"] == ["batch", *SHAPE]
    assert pre["image"].startswith("RGB 32x32") and "centre 32x32 cropped" in pre["image"] and "inverted" in pre["image"]
    assert pre["normalisation"].startswith("per channel (R, G, B)")
    images = torch.stack([load_image(p, channels=3, size=32) for p in photos])
    model = load(run)
    with torch.inference_mode():
        expected = model.eval()(images.float() / 255)
    got = ort_logits(result.path, images)
    assert torch.equal(got.argmax(1), expected.argmax(1)) and (got - expected).abs().max() <= 1e-4


def test_int8_export_of_a_colour_run_is_calibrated_on_its_colour_images(colour_run, tmp_path):
    run, folder = colour_run
    result = export(run, "onnx", tmp_path / "discs.int8.onnx", dataset=f"folder:{folder}", quantize="int8")
    assert result.quantization == "int8" and result.verification.passed
    assert onnx_input_dims(result.path) == ["batch", *SHAPE]
    assert json.loads(result.sidecar.read_text())["preprocessing"]["input"]["shape"] == ["batch", *SHAPE]


# --- serve ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def colour_client(colour_run):
    from fastapi.testclient import TestClient

    run, _ = colour_run
    weights = resolve_weights(run)
    model = load(weights)
    data = checking_data(model, run, None, None, own=True)  # the test images the run keeps, as `lenet serve` takes them
    with TestClient(create_app(model, run_info(weights, model), data.test_images, data.test_labels)) as client:
        yield client


def upload(path) -> tuple:
    return ("files", (path.name, path.read_bytes(), "image/png"))


def test_an_uploaded_colour_picture_gets_predicts_answer_and_its_input_in_colour(colour_client, colour_run, photos):
    response = colour_client.post("/predict?top_k=3&pixels=true", files=[upload(p) for p in photos])
    assert response.status_code == 200, response.text
    got = response.json()["predictions"]
    expected = expected_answers(colour_run[0], photos)
    assert [g["label"] for g in got] == [p.label for p in expected]
    for g, p, path in zip(got, expected, photos):
        assert [t["probability"] for t in g["top"]] == pytest.approx([q for _, q in p.top], abs=1e-6)
        seen = torch.tensor(g["pixels"], dtype=torch.uint8)  # 32 rows of 32 [r, g, b]
        assert torch.equal(seen.permute(2, 0, 1), load_image(path, channels=3, size=32))


def test_json_triples_are_a_colour_models_images_and_a_wrong_shape_is_a_one_line_422(colour_client, photos):
    image = load_image(photos[0], channels=3, size=32)
    triples = image.permute(1, 2, 0).tolist()
    floats = (image.permute(1, 2, 0).double() / 255).tolist()
    response = colour_client.post("/predict?top_k=3&pixels=true", json={"images": [triples, floats]})
    assert response.status_code == 200, response.text
    a, b = response.json()["predictions"]
    uploaded = colour_client.post("/predict?top_k=3", files=[upload(photos[0])]).json()["predictions"][0]
    assert a["top"] == b["top"] == uploaded["top"] and a["pixels"] == triples  # an S x S image is taken as it is

    grey = [[0] * 32] * 32  # a grey model's rows, sent to a colour model
    for body, fragment in [({"images": [grey]}, "Input should be a valid array"),
                           ({"images": [[[[0, 0, 0]] * 28] * 28]}, "at least 32"),
                           ({"images": [[[[0, 0]] * 32] * 32]}, "at least 3"),
                           ({"images": [[[[0, 0, 0, 0]] * 32] * 32]}, "at most 3")]:  # fmt: skip
        response = colour_client.post("/predict", json=body)
        assert response.status_code == 422 and response.json()["code"] == "invalid_request", response.text
        message = response.json()["detail"][0]["msg"]
        assert fragment in message and "32x32 colour images: 32 rows of 32 [r, g, b] pixels" in message, message
        assert "\n" not in message
    bad = colour_client.post("/predict", json={"images": [[[[0, 0, 300]] * 32] * 32]})
    assert bad.status_code == 422 and "0-255" in bad.json()["detail"]


def test_model_samples_and_layers_speak_colour(colour_client, colour_run):
    info = colour_client.get("/model").json()
    assert (info["channels"], info["image_size"]) == (3, 32) and info["classes"] == sorted(HUES)
    run, _ = colour_run
    model = load(run)
    images = checking_data(model, run, None, None, own=True).test_images
    first = colour_client.get("/samples").json()[0]
    png = colour_client.get(first["url"]).content
    assert Image.open(io.BytesIO(png)).mode == "RGB"
    assert torch.equal(decode_image(png, channels=3, size=32), images[first["index"]])
    layers = colour_client.post("/layers", files=[("files", ("s.png", png, "image/png"))])
    assert layers.status_code == 200, layers.text
    body = layers.json()
    assert torch.equal(torch.tensor(body["pixels"], dtype=torch.uint8).permute(2, 0, 1), images[first["index"]])
    c = model.net.config
    pooled = (32 + 2 * c.padding - 4) // 2  # a 5x5 convolution over the 32x32 input, then a 2x2 pool
    assert body["conv"][0]["shape"] == [c.channels[0], pooled, pooled]


def test_a_grey_upload_to_a_colour_model_is_read_in_colour(colour_client):
    # A black stroke on white, saved grey: still an image a colour model takes, read as RGB like any upload.
    drawing = Image.new("RGB", (280, 280), "white")
    ImageDraw.Draw(drawing).line((40, 40, 240, 240), fill="black", width=22)
    buffer = io.BytesIO()
    drawing.convert("L").save(buffer, format="PNG")
    response = colour_client.post("/predict?pixels=true", files=[("files", ("d.png", buffer.getvalue(), "image/png"))])
    assert response.status_code == 200 and len(response.json()["predictions"][0]["pixels"][0][0]) == 3


def test_an_exported_colour_model_is_served_by_itself(colour_run, photos, tmp_path):
    from fastapi.testclient import TestClient

    run, _ = colour_run
    path = export(run, "onnx", tmp_path / "discs.onnx").path
    with TestClient(exported_app(path, DEFAULTS)) as client:
        info = client.get("/model").json()
        assert (info["channels"], info["image_size"]) == (3, 32) and info["runtime"].startswith("onnxruntime")
        response = client.post("/predict?top_k=3", files=[upload(p) for p in photos])
        assert response.status_code == 200, response.text
        got = response.json()["predictions"]
        triples = load_image(photos[1], channels=3, size=32).permute(1, 2, 0).tolist()
        assert client.post("/predict", json={"images": [triples]}).status_code == 200
        assert client.post("/predict", json={"images": [[[0] * 32] * 32]}).status_code == 422
    expected = expected_answers(run, photos)
    assert [g["label"] for g in got] == [p.label for p in expected]
    for g, p in zip(got, expected):
        assert [t["probability"] for t in g["top"]] == pytest.approx([q for _, q in p.top], abs=1e-4)
