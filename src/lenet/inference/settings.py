"""The server's settings and their defaults, light enough for the command line to read without the server."""

from __future__ import annotations

from dataclasses import dataclass

MAX_IMAGES = 64  # per request
# onnxruntime-int8: the model quantized to int8 at start-up (as `lenet export --quantize int8` does) and
# served once its test accuracy is within export.INT8_MAX_DROP of fp32's.
RUNTIMES = ("auto", "onnxruntime", "onnxruntime-int8", "torch")
# --views: which test-time views the server averages. "recorded": the run's own (the default recipe's
# ten); "mirror": the image and its mirror; "one": the image alone. Fewer views cost less CPU per image;
# `python -m benchmarks.serve_load RUN --accuracy` gives each choice's accuracy beside its latency.
VIEW_CHOICES = ("recorded", "mirror", "one")


@dataclass(frozen=True)
class ServeSettings:
    """How the server batches and what it accepts: the one place for these defaults (the command
    line, `create_app`, `serve` and the load benchmark all read them from here)."""

    max_batch: int = 64  # images in one forward pass; a bigger request is split across passes
    max_wait_ms: float = 2.0  # how long a pass waits for more requests to join it
    max_body_bytes: int = 8 * 2**20  # a body bigger than this gets 413 before it is read
    runtime: str = "auto"  # auto: ONNX Runtime where installed and the model is on the CPU, else PyTorch
    # ONNX Runtime's threads in one pass. Two, not one: the ten views take a core about 1 ms per image,
    # and a second thread cuts the pass the next requests wait on by about 40% (BENCHMARKS.md, Serving).
    runtime_threads: int = 2
    verify_images: int = 1000  # test images ONNX Runtime must answer as PyTorch does before it serves
    # Test images the int8 model's accuracy is compared with fp32's on before it serves: all of them
    # (10,000 for Fashion-MNIST), as at export; on 1,000 the half-point drop allowed would be 5 images.
    int8_check_images: int = 10_000
    views: str = "recorded"  # one of VIEW_CHOICES
    # Pixels all of one request's images may hold, from their headers: 24 megapixels is two 12 MP phone
    # photos, or 30,000 28x28 images; a 35 KB PNG can claim 36 MP, which takes a core about 0.26 s.
    max_request_pixels: int = 24_000_000
    # A request whose images hold more pixels than this, or more encoded bytes than `light_bytes`, decodes
    # in the heavy lane, which takes `heavy_decodes` requests at a time; the rest (a 28x28 image is 784
    # pixels, a drawing 78,400) decode on the forward thread just before their pass, never queued behind
    # a heavy one: a second hand-off, to a decode thread, cost more CPU than decoding a small image.
    light_pixels: int = 1_000_000
    # A light request's headers are read on the event loop, and its images decoded on the forward thread,
    # where every request waits on them. Reading a header costs Pillow up to about 1 us a byte (a PNG of
    # many compressed text chunks, a JPEG of many tiny segments), so 16 KB keeps one request's hold on
    # either under the 20 ms p99 the server aims for; a 28x28 PNG is about 500 bytes. A JSON body of pixels
    # over this size is converted in the heavy lane too (a 28x28 image is about 3 KB of JSON).
    light_bytes: int = 16 * 1024
    heavy_decodes: int = 1
    # The heavy lane's threads run at this niceness (Linux: per thread), so that under load the event
    # loop and the forward passes get the cores first and a heavy decode the time left over.
    heavy_niceness: int = 10
    # How often (ms) Python offers the GIL to another waiting thread in the server's process (Python's
    # default is 5 ms). A light request's images decode on the forward thread, in Python; with 5 ms the event
    # loop can wait that long for the GIL behind a decode or a pass's bookkeeping, once per pass: p99 at 8
    # clients 12.8-35.6 ms at 5 ms against 12.8-15.3 ms at 0.5 ms, the same CPU per request (BENCHMARKS.md, Serving).
    switch_interval_ms: float = 0.5


DEFAULTS = ServeSettings()
