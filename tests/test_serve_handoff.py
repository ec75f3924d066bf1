"""The server's one hand-off per light request: its uploads' headers read on the event loop, their pixels
decoded on the forward thread just before their pass (batcher.Later), large ones in the heavy lane."""

import asyncio
import io
import json
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from lenet import load, predict
from lenet.data.images import decode_image
from lenet.inference.batcher import Later, MicroBatcher
from lenet.inference.serve import create_app, run_info
from lenet.inference.settings import DEFAULTS, ServeSettings
from lenet.runs.checkpoint import resolve_weights


def png(image: torch.Tensor) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image.reshape(image.shape[-2], image.shape[-1]).numpy()).save(buffer, format="PNG")
    return buffer.getvalue()


def upload(name: str, data: bytes) -> tuple[str, tuple[str, bytes, str]]:
    return ("files", (name, data, "image/png"))


@pytest.fixture(scope="module")
def served(small_run):
    """A server whose passes wait up to 0.5 s for more requests (requests sent together share one), with
    the model's answers to compare against."""
    from fastapi.testclient import TestClient

    weights = resolve_weights(small_run)
    model = load(weights)
    settings = ServeSettings(max_wait_ms=500, max_batch=4, max_request_pixels=2_000_000)
    with TestClient(create_app(model, run_info(weights, model), settings=settings)) as client:
        yield client, model


@pytest.fixture
def decode_threads(monkeypatch):
    """The name of the thread each decode_image call ran on, in the server's decoding module."""
    import lenet.inference.decoding

    names = []

    def recorded(*args, **kwargs):
        names.append(threading.current_thread().name)
        return decode_image(*args, **kwargs)

    monkeypatch.setattr(lenet.inference.decoding, "decode_image", recorded)
    return names


def lane(thread: str) -> str:
    """A thread's pool (lenet-forward, lenet-decode-heavy), or the event loop's for any other thread."""
    return thread.rstrip("_0123456789") if thread.startswith("lenet-") else "event loop"


def together(client, *requests):
    """Each (path, files) request sent at once from a thread of its own; the answers in the same order."""
    with ThreadPoolExecutor(len(requests)) as pool:
        return list(pool.map(lambda r: client.post(r[0], files=r[1]), requests))


def test_a_pass_answers_a_good_upload_beside_a_corrupt_one_which_alone_gets_its_400(served, fmnist, decode_threads):
    client, model = served
    good = png(fmnist.test_images[0])
    cut = png(fmnist.test_images[1])
    cut = cut[: len(cut) // 2]  # its header reads (28x28), its pixels end half way
    before = client.get("/healthz").json()
    ok, bad = together(client, ("/predict", [upload("good.png", good)]), ("/predict", [upload("cut.png", cut)]))
    after = client.get("/healthz").json()

    assert ok.status_code == 200, ok.text
    assert ok.json()["predictions"][0]["label"] == predict(model, fmnist.test_images[:1])[0].label
    assert bad.status_code == 400, bad.text
    assert bad.json() == {"detail": "cut.png: cannot decode image (OSError: image file is truncated)", "code": "damaged_image"}
    # Both were decoded on the forward thread for one pass, which held the good image alone.
    assert [lane(t) for t in decode_threads] == ["lenet-forward"] * 2, decode_threads
    assert after["forward_passes"] - before["forward_passes"] == 1 and after["images"] - before["images"] == 1
    assert after["decodes"]["light"] - before["decodes"]["light"] == 2
    assert client.post("/predict", files=[upload("again.png", good)]).status_code == 200  # and the server goes on


def test_light_uploads_decode_on_the_forward_thread_and_large_ones_in_the_heavy_lane(served, fmnist, decode_threads, monkeypatch):
    """By pixels (a 1,100x1,100 image: over light_pixels) and by bytes (a 28x28 PNG carrying 20 KB of text,
    whose header is not read on the event loop at all)."""
    import lenet.inference.decoding

    client, _ = served
    measured = []
    real_size = lenet.inference.decoding.image_size
    monkeypatch.setattr(lenet.inference.decoding, "image_size",
                        lambda data, name: measured.append((name, threading.current_thread().name)) or real_size(data, name))  # fmt: skip

    large = io.BytesIO()
    Image.new("L", (1100, 1100)).save(large, format="PNG")
    wordy = io.BytesIO()
    info = PngInfo()
    info.add_text("note", "x" * (DEFAULTS.light_bytes + 4_000))
    Image.fromarray(fmnist.test_images[2, 0].numpy()).save(wordy, format="PNG", pnginfo=info)
    assert len(wordy.getvalue()) > DEFAULTS.light_bytes
    before = client.get("/healthz").json()["decodes"]
    for name, data in (("small.png", png(fmnist.test_images[2])), ("large.png", large.getvalue()), ("wordy.png", wordy.getvalue())):
        assert client.post("/predict", files=[upload(name, data)]).status_code == 200
    after = client.get("/healthz").json()["decodes"]

    assert [lane(t) for t in decode_threads] == ["lenet-forward", "lenet-decode-heavy", "lenet-decode-heavy"], decode_threads
    # Headers are read on the event loop for a request of few bytes (large.png again in the heavy lane, where it
    # is decoded), and only in the heavy lane for one of many.
    assert [(name, lane(t)) for name, t in measured] == [("small.png", "event loop"), ("large.png", "event loop"),
                                                         ("large.png", "lenet-decode-heavy"), ("wordy.png", "lenet-decode-heavy")]  # fmt: skip
    assert (after["light"] - before["light"], after["heavy"] - before["heavy"]) == (1, 2)


def test_json_pixels_convert_on_the_forward_thread_and_a_large_body_in_the_heavy_lane(served, fmnist, monkeypatch):
    """A JSON body of a few KB is converted just before its pass; one over light_bytes (12 images here) in the heavy
    lane, where its conversion holds up no other request's pass. Both answer as the model does."""
    import lenet.inference.serve as serve_module

    client, model = served
    threads = []
    real = serve_module.from_pixels
    monkeypatch.setattr(serve_module, "from_pixels",
                        lambda *args: threads.append(threading.current_thread().name) or real(*args))  # fmt: skip
    expected = [p.top[0][0] for p in predict(model, fmnist.test_images[:12])]
    before = client.get("/healthz").json()["decodes"]
    for count in (1, 12):
        body = {"images": [image[0].tolist() for image in fmnist.test_images[:count]]}
        assert (len(json.dumps(body, separators=(",", ":"))) > DEFAULTS.light_bytes) == (count == 12)
        answer = client.post("/predict", json=body)
        assert answer.status_code == 200, answer.text
        assert [p["label"] for p in answer.json()["predictions"]] == expected[:count]
    after = client.get("/healthz").json()["decodes"]

    assert [lane(t) for t in threads] == ["lenet-forward"] + ["lenet-decode-heavy"] * 12, threads
    assert (after["light"] - before["light"], after["heavy"] - before["heavy"]) == (0, 1)


def test_requests_keep_their_order_across_split_passes_and_each_later_is_made_once(small_run, fmnist):
    model = load(small_run)
    images = fmnist.test_images[:18]
    made = []

    def later(part: torch.Tensor) -> Later:
        return Later(len(part), lambda: made.append((len(part), threading.current_thread().name)) or part.clone())

    async def go():
        batcher = MicroBatcher(model, max_batch=4, max_wait_s=0.5)
        await batcher.start()
        try:  # 10 images as a Later (three parts), 3 as a tensor, 5 as a Later (two parts)
            return await asyncio.gather(batcher(later(images[:10])), batcher(images[10:13]), batcher(later(images[13:])))
        finally:
            await batcher.stop()

    answers = asyncio.run(go())
    expected = predict(model, images, top_k=10)
    got = [p for answer in answers for p in answer]
    assert [p.label for p in got] == [p.label for p in expected]
    for g, e in zip(got, expected):
        assert [q for _, q in g.top] == pytest.approx([q for _, q in e.top], abs=1e-6)
    assert sorted((n, lane(t)) for n, t in made) == [(5, "lenet-forward"), (10, "lenet-forward")]  # once each, for all its parts


def test_a_request_that_fails_to_be_made_fails_alone_in_its_pass_and_in_every_part(small_run, fmnist):
    model = load(small_run)
    tries = []

    def broken():
        tries.append(threading.current_thread().name)
        raise ValueError("no")

    async def go():
        batcher = MicroBatcher(model, max_batch=4, max_wait_s=0.5)
        await batcher.start()
        try:  # one pass of four images: two good requests around a broken one
            answers = await asyncio.gather(batcher(fmnist.test_images[:1]), batcher(Later(2, broken)),
                                           batcher(fmnist.test_images[1:2]), return_exceptions=True)  # fmt: skip
            passes = batcher.batches
            with pytest.raises(ValueError, match="no"):  # six images: two parts, made (and failed) once
                await batcher(Later(6, broken))
            return answers, passes, await batcher(fmnist.test_images[2:3]), batcher.images
        finally:
            await batcher.stop()

    (first, failed, third), passes, after, served = asyncio.run(go())
    assert passes == 1 and len(first) == 1 and len(third) == 1 and len(after) == 1
    assert isinstance(failed, ValueError) and str(failed) == "no"
    assert served == 3  # the broken requests' images never reached a pass
    assert [lane(t) for t in tries] == ["lenet-forward"] * 2
    expected = predict(model, fmnist.test_images[:3])
    assert [p.label for p in first + third + after] == [p.label for p in expected]


def test_a_client_gone_mid_pass_leaves_the_others_answered(small_run, fmnist):
    model = load(small_run)
    in_make, release = threading.Event(), threading.Event()

    def slow():
        in_make.set()
        release.wait(10)
        return fmnist.test_images[:1]

    async def go():
        batcher = MicroBatcher(model, max_batch=8, max_wait_s=0.2)
        await batcher.start()
        try:
            gone = asyncio.create_task(batcher(Later(1, slow)))
            stays = asyncio.create_task(batcher(fmnist.test_images[1:3]))
            await asyncio.get_running_loop().run_in_executor(None, in_make.wait, 10)  # the pass is being made
            gone.cancel()
            release.set()
            answer = await stays
            return gone, answer, await batcher(fmnist.test_images[3:4])
        finally:
            release.set()
            await batcher.stop()

    gone, answer, later = asyncio.run(go())
    assert gone.cancelled() and len(answer) == 2 and len(later) == 1
    expected = predict(model, fmnist.test_images[1:4])
    assert [p.label for p in answer + later] == [p.label for p in expected]


@pytest.mark.tripwires  # its patches are reached only by decoding, which it shows it would catch
@pytest.mark.parametrize("image_format", ["PNG", "JPEG", "GIF", "BMP", "WEBP"])
def test_the_header_read_on_the_event_loop_decodes_no_pixel(image_format, monkeypatch):
    """image_size, which a light request's uploads meet on the event loop, never loads an image's pixels."""
    from PIL import ImageFile

    from lenet.core.errors import ImageError
    from lenet.data.images import image_size

    buffer = io.BytesIO()
    Image.new("RGB", (300, 200), (200, 10, 10)).save(buffer, format=image_format)

    def no_pixels(*_args, **_kwargs):
        raise AssertionError("pixels decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_pixels)
    monkeypatch.setattr(Image.Image, "load", no_pixels)
    assert image_size(buffer.getvalue(), "x") == (300, 200)
    with pytest.raises(ImageError, match="pixels decoded"):  # decoding itself meets the tripwire
        decode_image(buffer.getvalue(), "x")


def test_the_pixel_budget_refuses_on_the_headers_as_before(served, fmnist, decode_threads):
    """413 with the same one line, nothing decoded and nothing sent to a pass, whichever lane reads the headers."""
    client, _ = served
    big = io.BytesIO()
    Image.new("L", (1200, 1200)).save(big, format="PNG")  # 1,440,000 pixels; two of them are over 2,000,000
    padded = io.BytesIO()
    info = PngInfo()
    info.add_text("note", "x" * DEFAULTS.light_bytes)  # over light_bytes: its headers are read in the heavy lane
    Image.new("L", (1200, 1200)).save(padded, format="PNG", pnginfo=info)
    before = client.get("/healthz").json()
    for second in (big.getvalue(), padded.getvalue()):
        answer = client.post("/predict", files=[upload("a.png", big.getvalue()), upload("b.png", second)])
        assert answer.status_code == 413 and answer.json() == {
            "detail": "2 images of 2,880,000 pixels in all (the largest a.png, 1200x1200) is over this server's limit "
                      "of 2,000,000 pixels per request", "code": "too_many_pixels"}  # fmt: skip
    after = client.get("/healthz").json()
    assert decode_threads == []
    assert after["forward_passes"] == before["forward_passes"]
    assert {k: after["decodes"][k] - before["decodes"][k] for k in after["decodes"]} == {"light": 0, "heavy": 0, "over_budget": 2}
    assert client.post("/predict", files=[upload("a.png", big.getvalue())]).status_code == 200  # one alone is within
    assert [lane(t) for t in decode_threads] == ["lenet-decode-heavy"]


def test_predict_answers_the_bytes_fastapis_own_encoding_gives(served, fmnist):
    """/predict hands its answer to JSONResponse itself: the body and headers are what FastAPI's path for a
    returned dict (jsonable_encoder, then its default JSONResponse) makes of the same answer."""
    from fastapi.encoders import jsonable_encoder
    from fastapi.responses import JSONResponse

    client, _ = served
    files = [upload("鞋 1.png", png(fmnist.test_images[0])), upload("t.png", png(fmnist.test_images[1]))]
    for answer in (client.post("/predict?top_k=4&pixels=true", files=files),
                   client.post("/predict", json={"images": [fmnist.test_images[2, 0].tolist()]})):  # fmt: skip
        assert answer.status_code == 200, answer.text
        expected = JSONResponse(jsonable_encoder(answer.json()))
        assert answer.content == expected.body
        assert answer.headers["content-type"] == expected.headers["content-type"] == "application/json"
        assert answer.headers["content-length"] == expected.headers["content-length"]
    assert answer.json()["predictions"][0]["name"] == "images[0]"
    assert '"name":"鞋 1.png"' in client.post("/predict", files=files[:1]).content.decode()  # not \\u-escaped


def test_the_server_process_offers_the_gil_at_its_switch_interval(small_run, monkeypatch):
    """`lenet serve` sets the process's switch interval from its settings before it answers anything, so the
    event loop waits at most that long behind a decode on the forward thread (sys's default is 5 ms)."""
    import sys

    import uvicorn

    import lenet.inference.serve as serve_module

    seen = []
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets=(): [sock.close() for sock in sockets])  # not served
    monkeypatch.setattr(sys, "setswitchinterval", seen.append)  # recorded, not set: this is the test's process
    monkeypatch.setattr(torch, "set_num_threads", lambda threads: None)  # and its threads stay the test's
    assert serve_module.serve(str(small_run), port=0, settings=ServeSettings(switch_interval_ms=0.25)) == 0
    assert seen == [0.25 / 1000]
    assert DEFAULTS.switch_interval_ms == 0.5
