"""`lenet serve`: the HTTP API in-process (TestClient) and as a real uvicorn server on loopback."""

import asyncio
import io
import json
import os
import re
import struct
import subprocess
import sys
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import httpx2 as httpx
import pytest
import torch
from PIL import Image
from torch import nn

from conftest import LENET
from lenet import load, load_image, predict
from lenet.runs.checkpoint import resolve_weights
from lenet.data.registry import DATASETS
from lenet.core.errors import ServeError
from lenet.data.images import decode_image
from lenet.inference.batcher import MicroBatcher, made
from lenet.inference.serve import bind, create_app, exposure_warning, require_serve_extra, run_info
from lenet.inference.settings import DEFAULTS, ServeSettings

CLASSES = DATASETS["fashion-mnist"].classes


def png(pixels: torch.Tensor) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels.reshape(28, 28).numpy()).save(buffer, format="PNG")
    return buffer.getvalue()


def bomb_png(width: int = 30_000, height: int = 30_000) -> bytes:
    """A few hundred bytes whose header claims 900 megapixels."""
    data = png(torch.zeros(28, 28, dtype=torch.uint8))
    ihdr = struct.pack(">II", width, height) + data[24:29]
    chunk = b"IHDR" + ihdr
    return data[:8] + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk)) + data[33:]


@pytest.fixture(scope="module")
def client(small_run, fmnist):
    from fastapi.testclient import TestClient

    weights = resolve_weights(small_run)
    model = load(weights)
    app = create_app(model, run_info(weights, model), fmnist.test_images, fmnist.test_labels,
                     ServeSettings(max_body_bytes=2**20))  # fmt: skip
    with TestClient(app) as c:
        yield c


def test_uploads_answer_as_lenet_predict_does_in_the_order_sent(client, small_run, fmnist, tmp_path):
    images = fmnist.test_images[:5]
    files = [("files", (f"{i}.png", png(img), "image/png")) for i, img in enumerate(images)]
    response = client.post("/predict?top_k=3", files=files)
    assert response.status_code == 200, response.text
    got = response.json()["predictions"]
    paths = [tmp_path / f"{i}.png" for i in range(5)]
    for path, (_, (_, data, _)) in zip(paths, files):
        path.write_bytes(data)
    expected = predict(load(small_run), torch.stack([load_image(p) for p in paths]), top_k=3)
    assert [g["name"] for g in got] == [f"{i}.png" for i in range(5)]
    assert [g["label"] for g in got] == [p.label for p in expected]
    for g, p in zip(got, expected):
        assert [t["class"] for t in g["top"]] == [c for c, _ in p.top]
        assert [t["probability"] for t in g["top"]] == pytest.approx([q for _, q in p.top], abs=1e-6)


def test_json_pixels_ints_and_floats_mean_the_same_image(client, fmnist):
    image = fmnist.test_images[0, 0]
    as_ints, as_floats = image.tolist(), (image.double() / 255).tolist()
    response = client.post("/predict?top_k=10&pixels=true", json={"images": [as_ints, as_floats]})
    assert response.status_code == 200, response.text
    a, b = response.json()["predictions"]
    assert a["top"] == b["top"] and len(a["top"]) == 10
    assert a["pixels"] == as_ints  # a 28x28 Fashion-MNIST image is taken as it is


@pytest.mark.parametrize(
    "body, status, fragment",
    [
        ({"images": [[[0] * 28] * 27]}, 422, "at least 28"),
        ({"images": [[[0] * 28] * 27]}, 422, "This model takes 28x28 grey images: 28 rows of 28 pixels."),
        ({"images": [[[0] * 28] * 28 + [[0] * 28]]}, 422, "at most 28"),
        ({"images": []}, 422, "at least 1"),
        ({"pixels": []}, 422, "images"),
        ({"images": [[[256] * 28] * 28]}, 422, "0-255"),
        ({"images": [[[1.5] * 28] * 28]}, 422, "[0, 1]"),
        ({"images": [[["7"] * 28] * 28]}, 422, "number"),
        ({"images": [[[0.5] * 27 + [float("nan")]] + [[0.5] * 28] * 27]}, 422, "pixel values must be finite numbers"),
        ({"images": [[[float("inf")] * 28] * 28]}, 422, "pixel values must be finite numbers"),
    ],
)
def test_bad_json_is_422_with_a_message(client, body, status, fragment):
    # json.dumps writes NaN and Infinity as Python's parser reads them; httpx would refuse to send them.
    response = client.post("/predict", content=json.dumps(body), headers={"content-type": "application/json"})
    assert response.status_code == status and fragment in response.text, response.text


BIG_BAD_BODIES = {
    "64 images of strings": {"images": [[["7"] * 28] * 28] * 64},
    "one image without the outer list": {"images": [[0] * 28] * 28},
    "64 images one row short": {"images": [[[0] * 28] * 27] * 64},
    "64 images, each with its last pixel null": {"images": [[[0] * 28] * 27 + [[0] * 27 + [None]]] * 64},
    "images nested one level too deep": {"images": [[[[0] * 28] * 28] * 28] * 8},
}


@pytest.mark.parametrize("body", BIG_BAD_BODIES.values(), ids=BIG_BAD_BODIES.keys())
def test_a_big_bad_json_body_gets_a_small_reply_naming_the_first_problems(client, body):
    response = client.post("/predict", json=body)
    assert response.status_code == 422, response.text
    assert len(response.content) < 2_000, f"{len(response.content):,} bytes"  # was up to 9.3 MB
    detail = response.json()["detail"]
    assert 1 <= len(detail) <= 5 and detail[0]["loc"][:3] == ["body", "images", 0] and detail[0]["msg"]


def test_bad_json_stops_at_the_first_bad_item_not_after_every_pixel():
    """Bounded work, not only a bounded reply: validation itself gives up early."""
    from pydantic import ValidationError

    from lenet.inference.schemas import json_body_model

    with pytest.raises(ValidationError) as caught:
        json_body_model().model_validate({"images": [[["7"] * 28] * 28] * 64})
    assert caught.value.error_count() <= 2  # was 100,352: two per pixel (neither int nor float)


def test_error_messages_are_clipped_whatever_the_file_name(client):
    name = "x" * 4_000 + ".png"  # python-multipart refuses names of about 8 KB and more
    response = client.post("/predict", files=[("files", (name, b"not an image", "image/png"))])
    assert response.status_code == 400 and len(response.content) < 1_000, len(response.content)


def test_bad_uploads_are_refused_and_the_server_keeps_serving(client, fmnist):
    for files, status, fragment in [
        ([("files", ("x.png", b"not an image", "image/png"))], 400, "x.png: not a PNG"),
        ([("files", ("bomb.png", bomb_png(), "image/png"))], 413, "over this server's limit"),
        ([("files", ("big.bin", b"\0" * (2**20 + 1), "application/octet-stream"))], 413, "over the limit"),
        ([("other", (None, "text"))], 400, "no image files"),
    ]:
        response = client.post("/predict", files=files)
        assert response.status_code == status and fragment in response.text, response.text
    chunked = client.post("/predict", content=iter([b"{" * 2**19] * 3), headers={"content-type": "application/json"})
    assert chunked.status_code == 413
    assert client.post("/predict", content=b"hi", headers={"content-type": "text/plain"}).status_code == 415
    ok = client.post("/predict", files=[("files", ("t.png", png(fmnist.test_images[0]), "image/png"))])
    assert ok.status_code == 200 and client.get("/healthz").json()["status"] == "ok"


def test_model_samples_page_and_docs(client, small_run, fmnist):
    info = client.get("/model").json()
    assert info["name"] == "lenet_bn" and info["parameters"] == 61_750 and info["classes"] == list(CLASSES)
    assert (info["channels"], info["image_size"]) == (1, 28)  # the page draws, and offers the drawing pad, by these
    assert 0.5 < info["test_accuracy"] <= 1
    samples = client.get("/samples").json()
    assert {s["label"] for s in samples} == set(CLASSES)
    first = samples[0]
    assert torch.equal(decode_image(client.get(first["url"]).content), fmnist.test_images[first["index"]])
    assert client.get("/samples/10000.png").status_code == 404
    page = client.get("/")
    assert page.status_code == 200 and 'id="draw"' in page.text
    for asset in ("/static/app.js", "/static/style.css"):
        assert client.get(asset).status_code == 200
    for docs in ("/docs", "/redoc"):  # their scripts come from this server (the browser test runs them offline)
        html = client.get(docs)
        assert html.status_code == 200 and "/docs-assets/" in html.text and "cdn" not in html.text, html.text
    assert client.get("/docs-assets/swagger-ui-bundle.js").status_code == 200
    assert "/predict" in client.get("/openapi.json").json()["paths"]


# --- batching ---------------------------------------------------------------------------------


class PassSizes(nn.Module):
    """The model, noting how many images each forward pass holds."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model, self.sizes = model, []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.sizes.append(len(x))
        return self.model(x)


def run_batcher(model: nn.Module, requests: list[torch.Tensor], max_batch: int) -> list[list]:
    """Sends `requests` to one MicroBatcher at once; its wait is long, so all of them are queued
    before the first pass closes, whatever the machine's speed."""

    async def go():
        batcher = MicroBatcher(model, max_batch=max_batch, max_wait_s=0.5)
        await batcher.start()
        try:
            return await asyncio.gather(*(batcher(r) for r in requests))
        finally:
            await batcher.stop()

    return asyncio.run(go())


def assert_same_answers(got: list, expected: list) -> None:
    """Each image's answer is its own, in the order sent (batched or not, to float precision)."""
    assert [[c for c, _ in p.top] for p in got] == [[c for c, _ in p.top] for p in expected]
    for g, e in zip(got, expected):
        assert [q for _, q in g.top] == pytest.approx([q for _, q in e.top], abs=1e-6)


def test_concurrent_requests_share_passes_of_at_most_max_batch_images(small_run, fmnist):
    counted = PassSizes(load(small_run))
    images = fmnist.test_images[:40]
    expected = predict(counted.model, images, top_k=10)

    answers = run_batcher(counted, [images[i : i + 1] for i in range(32)], max_batch=8)
    assert counted.sizes == [8, 8, 8, 8]  # 32 requests in 4 shared passes, not 32
    assert_same_answers([a[0] for a in answers], expected[:32])

    counted.sizes.clear()  # a request is never added whole past the limit: it waits, or is split
    answers = run_batcher(counted, [images[:5], images[5:10], images[10:30]], max_batch=8)
    assert counted.sizes == [5, 5, 8, 8, 4]
    assert_same_answers([p for a in answers for p in a], expected[:30])


# --- a real server ---------------------------------------------------------------------------


def test_real_server_batches_concurrent_requests(live_server, fmnist):
    images = fmnist.test_images[:32]
    with httpx.Client(base_url=live_server, timeout=30) as http:
        before = http.get("/healthz").json()

        def one(img):
            response = http.post("/predict", files={"files": ("t.png", png(img), "image/png")})
            assert response.status_code == 200, response.text
            return response.json()["predictions"][0]["label"]

        with ThreadPoolExecutor(16) as pool:
            labels = list(pool.map(one, images))
        after = http.get("/healthz").json()
        batched = http.post("/predict", json={"images": [img[0].tolist() for img in images]}).json()["predictions"]
    assert labels == [p["label"] for p in batched]  # same answers one by one as in one request
    passes, served = after["forward_passes"] - before["forward_passes"], after["images"] - before["images"]
    # 16 clients at once against a 2 ms window: some of the 32 requests must have shared a pass.
    assert served == 32 and passes < 32, (passes, served)
    assert after["max_batch"] == DEFAULTS.max_batch and after["largest_pass"] <= DEFAULTS.max_batch


def test_real_server_refuses_huge_bodies_and_lives_on(live_server):
    with httpx.Client(base_url=live_server, timeout=30) as http:
        response = http.post("/predict", content=b"\0" * (9 * 2**20), headers={"content-type": "application/json"})
        assert response.status_code == 413
        assert http.get("/healthz").status_code == 200


def test_serve_errors_are_one_line(small_run):
    for args, fragment in [(["/nonexistent"], "no such run"), ([str(small_run), "--port", "70000"], "not a port"),
                           ([str(small_run), "--host", "256.1.1.1", "--port", "0"], "cannot listen")]:  # fmt: skip
        proc = subprocess.run([*LENET, "serve", *args], capture_output=True, text=True, timeout=120)
        assert proc.returncode != 0 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert fragment in proc.stderr and "Traceback" not in proc.stderr


def test_loopback_by_default_and_a_warning_for_all_interfaces():
    for host, warns in [("127.0.0.1", False), ("0.0.0.0", True)]:
        sock = bind(host, 0)  # bound and closed at once: nothing is served
        try:
            assert (exposure_warning(sock) is not None) == warns
        finally:
            sock.close()


def test_without_the_serve_extra_it_says_how_to_get_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "fastapi", None)
    with pytest.raises(ServeError, match=r"pip install 'lenet\[serve\]'"):
        require_serve_extra()


def test_onnx_runtime_serves_pytorchs_answers_and_says_so(small_run, fmnist):
    from fastapi.testclient import TestClient

    from lenet.inference.export import RuntimeClassifier
    from lenet.inference.serve import serving_model

    weights = resolve_weights(small_run)
    model = load(weights)
    served, note = serving_model(model, DEFAULTS, fmnist)
    assert isinstance(served, RuntimeClassifier) and note == "" and served.runtime.startswith("onnxruntime")
    images = fmnist.test_images[1000:1300]  # beyond the images it was checked on
    expected, got = predict(model, images, top_k=10), predict(served, images, top_k=10)
    assert [p.label for p in got] == [p.label for p in expected]
    for g, e in zip(got, expected):
        assert [q for _, q in g.top] == pytest.approx([q for _, q in e.top], abs=1e-5)
    assert serving_model(model, replace(DEFAULTS, runtime="torch"), fmnist) == (model, "")

    app = create_app(served, run_info(weights, served), settings=DEFAULTS)
    with TestClient(app) as client:
        assert client.get("/model").json()["runtime"] == served.runtime
        response = client.post("/predict", json={"images": [img[0].tolist() for img in images[:8]]})
        assert [p["label"] for p in response.json()["predictions"]] == [p.label for p in expected[:8]]


def test_onnx_runtime_serves_on_its_threads_and_they_sleep_between_passes(small_run, fmnist):
    from lenet.inference.serve import serving_model

    model = load(resolve_weights(small_run))
    served, _ = serving_model(model, replace(DEFAULTS, runtime_threads=3, verify_images=200), fmnist)
    options = served.run.session.get_session_options()
    assert options.intra_op_num_threads == 3 and "(3 threads)" in served.runtime
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_without_onnx_runtime_auto_serves_with_pytorch_and_a_named_runtime_is_an_error(small_run, fmnist, monkeypatch):
    import lenet.inference.export
    from lenet.core.errors import ExportError
    from lenet.inference.serve import serving_model

    def missing():
        raise ExportError("ONNX export needs onnx and onnxruntime (onnxruntime is missing)")

    monkeypatch.setattr(lenet.inference.export, "_require_onnx", missing)
    model = load(small_run)
    served, note = serving_model(model, DEFAULTS, fmnist)
    assert served is model and note.startswith("serving with PyTorch: ") and "onnxruntime is missing" in note
    with pytest.raises(ServeError, match="--runtime onnxruntime: .*onnxruntime is missing"):
        serving_model(model, replace(DEFAULTS, runtime="onnxruntime"), fmnist)


def test_onnx_runtime_that_answers_differently_never_serves(small_run, fmnist, monkeypatch):
    import lenet.inference.export
    from lenet.core.errors import ExportError

    verify = lenet.inference.export.verify
    monkeypatch.setattr(lenet.inference.export, "verify", lambda model, run, images, runtime="": verify(
        model, lambda x: run(x).roll(1, dims=1), images, runtime))  # a runtime that shifts every answer
    with pytest.raises(ExportError, match="does not reproduce the model: argmax agrees on"):
        lenet.inference.export.onnx_runtime(load(small_run), fmnist.test_images[:200], threads=1)


def test_int8_runtime_serves_once_its_accuracy_is_checked_and_names_int8(small_run, fmnist):
    from fastapi.testclient import TestClient

    from lenet.inference.export import RuntimeClassifier
    from lenet.inference.serve import serving_model

    weights = resolve_weights(small_run)
    model = load(weights)
    served, note = serving_model(model, replace(DEFAULTS, runtime="onnxruntime-int8"), fmnist)
    assert isinstance(served, RuntimeClassifier) and note == ""
    # The runtime names int8 and the two accuracies it was checked on, over the whole test set.
    assert served.runtime.startswith("onnxruntime") and " int8 " in served.runtime
    assert re.search(r"test accuracy \d+\.\d\d% against fp32 \d+\.\d\d% on 10,000 images", served.runtime), served.runtime
    # An int8 model, not the fp32 one: its logits are near PyTorch's, but not within fp32's 1e-4.
    x = fmnist.test_images[:64].float() / 255
    with torch.no_grad():
        difference = (served.eval()(x) - model.eval()(x)).abs().max().item()
    assert 1e-3 < difference < 1.0, difference
    images = fmnist.test_images[:300]
    expected, got = predict(model, images, top_k=1), predict(served, images, top_k=1)
    assert sum(g.label == e.label for g, e in zip(got, expected)) >= 294  # int8 mostly agrees; not to 1e-4

    with TestClient(create_app(served, run_info(weights, served), settings=DEFAULTS)) as client:
        assert "int8" in client.get("/model").json()["runtime"]
        response = client.post("/predict", json={"images": [img[0].tolist() for img in images[:4]]})
        assert response.status_code == 200 and [p["label"] for p in response.json()["predictions"]] == [g.label for g in got[:4]]


def test_int8_runtime_that_loses_too_much_accuracy_never_serves(small_run, fmnist, monkeypatch):
    from lenet.inference.serve import serving_model

    monkeypatch.setattr("lenet.inference.export.INT8_MAX_DROP", -1.0)  # no int8 model can pass
    settings = replace(DEFAULTS, runtime="onnxruntime-int8", int8_check_images=2000)
    with pytest.raises(ServeError, match=r"--runtime onnxruntime-int8: the int8 model loses too much accuracy: "
                                         r"int8 test accuracy .* on 2,000 test images"):  # fmt: skip
        serving_model(load(small_run), settings, fmnist)


# --- the decode budget --------------------------------------------------------------------------


def big_png(side: int) -> bytes:
    """A real, valid PNG of side x side black pixels: small on the wire, large once decoded."""
    buffer = io.BytesIO()
    Image.new("L", (side, side)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def tight_client(small_run):
    """A server whose requests may hold 200,000 pixels in all."""
    from fastapi.testclient import TestClient

    weights = resolve_weights(small_run)
    model = load(weights)
    with TestClient(create_app(model, run_info(weights, model), settings=ServeSettings(max_request_pixels=200_000))) as c:
        yield c


def test_a_request_over_the_pixel_budget_is_413_with_one_line_and_nothing_decoded(tight_client, monkeypatch):
    import lenet.inference.decoding

    decoded = []
    monkeypatch.setattr(lenet.inference.decoding, "decode_image", lambda *a, **k: decoded.append(a) or decode_image(*a, **k))
    one = [("files", ("a.png", big_png(400), "image/png"))]  # 160,000 pixels: within
    assert tight_client.post("/predict", files=one).status_code == 200 and len(decoded) == 1
    two = one + [("files", ("b.png", big_png(300), "image/png"))]  # 250,000 pixels in all
    response = tight_client.post("/predict", files=two)
    assert response.status_code == 413, response.text
    detail = response.json()["detail"]
    assert "\n" not in detail and "250,000 pixels" in detail and "limit of 200,000 pixels per request" in detail, detail
    assert len(decoded) == 1  # refused on the headers: neither image was decoded
    assert tight_client.get("/healthz").json()["decodes"]["over_budget"] == 1


def test_a_header_past_pillows_own_limit_is_413_naming_the_servers_budget(client):
    """Pillow refuses to open a header of over 2 x MAX_IMAGE_PIXELS (about 179 MP) before its size can be
    read; the server's budget, smaller, must still answer first, with its own figure."""
    from PIL import Image

    claimed = 20_000 * 20_000
    assert claimed > 2 * Image.MAX_IMAGE_PIXELS and claimed > DEFAULTS.max_request_pixels  # the case at hand
    response = client.post("/predict", files=[("files", ("huge.png", bomb_png(20_000, 20_000), "image/png"))])
    assert response.status_code == 413, response.text
    detail = response.json()["detail"]
    assert f"{claimed:,} pixels" in detail and "20000x20000" in detail, detail
    assert f"this server's limit of {DEFAULTS.max_request_pixels:,} pixels per request" in detail, detail


def test_decoding_never_runs_on_the_event_loop(client, fmnist, monkeypatch):
    """Even a 28x28 PNG (it used to be decoded inline, under 64 KB) and JSON pixels are decoded off the event
    loop: on the forward thread, just before their pass."""
    import threading

    import lenet.inference.decoding
    import lenet.inference.serve

    threads = []
    for module, name in ((lenet.inference.decoding, "decode_image"), (lenet.inference.serve, "from_pixels")):
        real = getattr(module, name)
        monkeypatch.setattr(module, name,
                            lambda *a, real=real, **k: threads.append(threading.current_thread().name) or real(*a, **k))  # fmt: skip
    small = png(fmnist.test_images[0])
    assert client.post("/predict", files=[("files", ("t.png", small, "image/png"))]).status_code == 200
    assert client.post("/predict", json={"images": [fmnist.test_images[0, 0].tolist()]}).status_code == 200
    assert len(threads) == 2 and all(t.startswith("lenet-forward") for t in threads), threads


def test_heavy_decodes_queue_in_their_own_lane_while_light_ones_go_on(monkeypatch):
    """One heavy slot: two requests of large images never decode at once, and while one decodes,
    light requests (28x28 images) are measured and handed on, to be decoded on the forward thread."""
    import threading

    import lenet.inference.decoding
    from lenet.inference.decoding import Decoder

    release, lock = threading.Event(), threading.Lock()
    busy, most = [0], [0]

    niceness = []

    def slow_when_big(data, name, max_pixels, *shape):  # shape: the model's channels and side
        if name.startswith("heavy"):
            niceness.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
            with lock:
                busy[0] += 1
                most[0] = max(most[0], busy[0])
            release.wait(10)
            with lock:
                busy[0] -= 1
        return decode_image(data, name, max_pixels, *shape)

    monkeypatch.setattr(lenet.inference.decoding, "decode_image", slow_when_big)
    heavy, light = big_png(1500), png(torch.zeros(28, 28, dtype=torch.uint8))

    async def go():
        decoder = Decoder(budget=10_000_000, light_pixels=100_000, heavy=1)
        decoder.start()
        try:
            heavies = [asyncio.create_task(decoder([(f"heavy{i}", heavy)])) for i in range(2)]
            await asyncio.sleep(0.2)
            lights = await asyncio.wait_for(asyncio.gather(*(decoder([("light", light)]) for _ in range(20))), 5)
            assert not any(h.done() for h in heavies)  # the heavy ones are still held up, the light ones are done
            release.set()
            return [made(later) for later in lights], await asyncio.gather(*heavies), decoder
        finally:
            release.set()
            decoder.stop()

    lights, heavies, decoder = asyncio.run(go())
    assert [tuple(images.shape) for images in lights] == [(1, 1, 28, 28)] * 20
    assert [tuple(images.shape) for images in heavies] == [(1, 1, 28, 28)] * 2
    assert most[0] == 1
    if sys.platform.startswith("linux"):  # the heavy lane yields the cores to the rest (per thread on Linux)
        assert niceness == [os.getpriority(os.PRIO_PROCESS, 0) + DEFAULTS.heavy_niceness] * 2, niceness
    assert (decoder.light_requests, decoder.heavy_requests) == (20, 2)


# --- what each layer sees ---------------------------------------------------------------------


def test_layers_come_from_one_pass_of_the_network_and_choose_the_reports_channels(client, small_run, fmnist):
    from lenet.insight import analysis, plots
    from lenet.insight.analysis import channels_shown, feature_maps, layer_activations

    image = fmnist.test_images[7:8]
    response = client.post("/layers", files=[("files", ("t.png", png(image[0]), "image/png"))])
    assert response.status_code == 200, response.text
    got = response.json()
    net = load(small_run).net.eval()
    with torch.no_grad():
        logits = net(image.float() / 255)[0]
    assert got["logits"] == pytest.approx(logits.tolist(), abs=1e-3)  # the walk is the network's own pass
    assert got["probabilities"] == pytest.approx(logits.softmax(0).tolist(), abs=1e-5)
    assert got["classes"] == list(CLASSES) and got["label"] == CLASSES[int(logits.argmax())]
    assert got["pixels"] == image[0, 0].tolist()
    expected = feature_maps(net, image)  # what the report draws, block by block
    assert [c["layer"] for c in got["conv"]] == [m.layer for m in expected] and len(expected) == 2
    for conv, maps in zip(got["conv"], expected):
        assert conv["kind"] == "ReLU" and conv["shape"] == list(maps.maps.shape[1:])
        assert conv["channels"] == channels_shown(maps.maps.shape[1]) == list(range(min(16, maps.maps.shape[1])))
        assert torch.tensor(conv["maps"]) == pytest.approx(maps.maps[0, conv["channels"]], abs=1e-4)
        assert conv["range"] == pytest.approx([float(maps.maps[0].min()), float(maps.maps[0].max())], abs=1e-4)
    assert [(h["layer"], len(h["values"])) for h in got["hidden"]] == [("fc.1", 120), ("fc.3", 84)]
    assert min(v for h in got["hidden"] for v in h["values"]) >= 0  # after ReLU
    # the report and the page choose with the same function
    assert plots.channels_shown is analysis.channels_shown and layer_activations(net, image).conv[1].block == 2
    as_json = client.post("/layers", json={"images": [image[0, 0].tolist()]}).json()
    assert as_json["logits"] == got["logits"] and as_json["name"] == "images[0]"


def test_layers_takes_one_image_and_refuses_as_predict_does(client, fmnist):
    two = [("files", (f"{i}.png", png(fmnist.test_images[i]), "image/png")) for i in range(2)]
    response = client.post("/layers", files=two)
    assert response.status_code == 400 and "one image at a time; got 2" in response.json()["detail"]
    assert client.post("/layers", files=[("files", ("x.png", b"", "image/png"))]).json()["detail"] == "x.png: empty file, 0 bytes"
    assert client.post("/layers", content=b"hi", headers={"content-type": "text/plain"}).status_code == 415


def test_the_openapi_schema_describes_every_answer_and_real_answers_fit_it(client, fmnist):
    from lenet.inference.schemas import response_models

    spec = client.get("/openapi.json").json()
    for path in ("/predict", "/layers"):
        responses = spec["paths"][path]["post"]["responses"]
        assert set(responses) >= {"200", "400", "413", "415", "422"}, responses.keys()
        for status, answer in responses.items():
            schema = answer["content"]["application/json"]["schema"]
            assert schema.get("$ref") or schema.get("type") == "array", (path, status, schema)  # never an empty object
    for path in ("/model", "/healthz", "/samples"):
        assert spec["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]["schema"] != {}
    predict_schema = spec["components"]["schemas"]["Predictions"]
    assert predict_schema["properties"]["predictions"]["items"]["$ref"].endswith("ImagePrediction")
    assert "class" in spec["components"]["schemas"]["ClassProbability"]["properties"]

    schemas = response_models()
    files = [("files", ("t.png", png(fmnist.test_images[0]), "image/png"))]
    schemas.Predictions.model_validate(client.post("/predict?pixels=true", files=files).json(), strict=True)
    schemas.Layers.model_validate(client.post("/layers", files=files).json())
    schemas.ModelInfo.model_validate(client.get("/model").json())
    schemas.Health.model_validate(client.get("/healthz").json())
    for sample in client.get("/samples").json():
        schemas.Sample.model_validate(sample)
    for bad in (client.post("/predict", files=[("files", ("x.png", b"x", "image/png"))]),
                client.post("/predict", json={"images": []}), client.post("/predict?top_k=11", files=files)):  # fmt: skip
        assert bad.status_code in (400, 422)
        schemas.Error.model_validate(bad.json())


def test_serve_time_views_are_chosen_and_named_in_every_answer(fmnist, tmp_path):
    from fastapi.testclient import TestClient

    from lenet import create_model, save_model
    from lenet.inference.serve import with_views
    from lenet.models.views import Classifier, Views

    torch.manual_seed(0)
    save_model(Classifier(create_model("lenet_bn").eval(), Views(flip=True, shift=1)), tmp_path / "model.safetensors")
    recorded = load(tmp_path)
    images = fmnist.test_images[:4]
    for choice, count in (("recorded", 10), ("mirror", 2), ("one", 1)):
        model = with_views(recorded, choice)
        assert model.views.count == count and model.net is recorded.net
        with TestClient(create_app(model, run_info(tmp_path / "model.safetensors", model))) as client:
            answer = client.post("/predict?top_k=10", json={"images": [img[0].tolist() for img in images]}).json()
            assert answer["views"] == model.views.describe() and client.get("/model").json()["views"] == model.views.to_dict()
        expected = predict(model, images, top_k=10)
        assert [p["label"] for p in answer["predictions"]] == [p.label for p in expected]
    with pytest.raises(ServeError, match="unknown views 'all'"):
        with_views(recorded, "all")


def test_every_refusal_carries_a_code_beside_its_english_detail(client, fmnist):
    """The page words each refusal in its own language from `code`; `detail` stays the English sentence."""
    image = png(fmnist.test_images[0])
    cases = [
        (client.post("/predict", files=[("files", ("notimage.png", b"not an image", "image/png"))]), 400, "not_an_image"),
        (client.post("/predict", files=[("files", ("empty.png", b"", "image/png"))]), 400, "empty_file"),
        (client.post("/predict", files=[("files", (f"{i}.png", image, "image/png")) for i in range(65)]), 400, "too_many_images"),
        (client.post("/predict", files={"x": (None, "1")}), 400, "no_image_files"),
        (client.post("/layers", files=[("files", ("a.png", image, "image/png")), ("files", ("b.png", image, "image/png"))]), 400, "one_image_only"),
        (client.post("/predict", content=b"x", headers={"content-type": "text/plain"}), 415, "unsupported_content_type"),
        (client.post("/predict", json={"images": []}), 422, "invalid_request"),
        (client.post("/predict", json={"images": [[[300] * 28] * 28]}), 422, "bad_pixels"),
        (client.get("/samples/99999999.png"), 404, "no_such_sample"),
        (client.get("/nowhere"), 404, "not_found"),
    ]  # fmt: skip
    for answer, status, code in cases:
        assert (answer.status_code, answer.json().get("code")) == (status, code), answer.json()
        assert answer.json()["detail"]
    assert client.post("/predict", files=[("files", ("notimage.png", b"x", "image/png"))]).json()["detail"].startswith("notimage.png: not a ")


def test_a_request_over_the_pixel_budget_says_too_many_pixels(tight_client, fmnist):
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (500, 500)).save(buffer, format="PNG")
    answer = tight_client.post("/predict", files=[("files", ("big.png", buffer.getvalue(), "image/png"))])
    assert (answer.status_code, answer.json()["code"]) == (413, "too_many_pixels")
