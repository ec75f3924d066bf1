"""`lenet serve`: a run's model behind a small HTTP API and a web page to try it.

    POST /predict      image files (multipart) or {"images": [28x28 pixel arrays]} -> top-k classes
    POST /layers       one image, the same two ways -> what each layer of one pass sees, as arrays
    GET  /model        model config, parameter count, classes, the run's test accuracy
    GET  /healthz      liveness, and how many forward passes served how many images
    GET  /samples      a few test images (GET /samples/{index}.png) for the page to try
    GET  /             the page; /docs and /redoc are the OpenAPI documentation, served offline

Every image goes through `lenet.data.images.decode_image` / `from_pixels` (-> `to_fashion_mnist`) and
`lenet.inference.predict`: the same code as `lenet predict`, so the server and the CLI cannot disagree.
Requests that arrive together share one forward pass (MicroBatcher), of at most `max_batch` images.

Decoding is bounded (Decoder): a request's images may hold `max_request_pixels` in all, read from
their headers before any pixel is decoded (else 413); every decode runs on a worker thread, never on
the event loop; and a request whose images are large decodes in a lane of its own, so a client that
sends decompression-heavy images waits on itself, not on everyone else.
"""

import asyncio
import io
import ipaddress
import os
import socket
import sys
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Annotated, Any, Union

import torch
from torch import nn

from lenet.core.version import __version__
from lenet.training.checkpoint import load, resolve_weights
from lenet.data.registry import IMAGE_SIZE, shown_name
from lenet.core.errors import LenetError, ServeError
from lenet.insight.analysis import LayerActivations, channels_shown, layer_activations
from lenet.inference.predict import DEFAULT_TOP_K, DIGITS, Prediction, prediction_record, predict
from lenet.data.images import MAX_PIXELS, decode_image, from_pixels, image_size, quiet_pillow_warnings
from lenet.models.lenet import count_parameters
from lenet.models.views import Classifier, Views, classes_of

STATIC = Path(__file__).parent / "static"
MAX_IMAGES = 64  # per request
SAMPLES_PER_CLASS = 2
DOCS_ASSETS = "/docs-assets"  # where fastapi-offline serves Swagger UI's and ReDoc's files
# Nothing but this server: what a page's scripts may fetch (data: and blob: are made in the page itself).
SAME_ORIGIN_ONLY = ("default-src 'self' data: blob:; script-src 'self' 'unsafe-inline' blob:; "
                    "style-src 'self' 'unsafe-inline'")
MAX_ERRORS = 5  # problems listed in one error reply: the first ones found
MAX_MESSAGE = 300  # characters of one error message (a file name in it may be any length)
RUNTIMES = ("auto", "onnxruntime", "torch")
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
    views: str = "recorded"  # one of VIEW_CHOICES
    # Pixels all of one request's images may hold, from their headers: 24 megapixels is two 12 MP phone
    # photos, or 30,000 28x28 images; a 35 KB PNG can claim 36 MP, which takes a core about 0.26 s.
    max_request_pixels: int = 24_000_000
    # A request whose images hold more pixels than this decodes in the heavy lane, which takes
    # `heavy_decodes` requests at a time; the rest (a 28x28 image is 784 pixels, a drawing 78,400)
    # decode `light_decodes` at a time, never queued behind a heavy one.
    light_pixels: int = 1_000_000
    light_decodes: int = 2
    heavy_decodes: int = 1
    # The heavy lane's threads run at this niceness (Linux: per thread), so that under load the event
    # loop and the forward passes get the cores first and a heavy decode the time left over.
    heavy_niceness: int = 10


DEFAULTS = ServeSettings()


# --- batching ---------------------------------------------------------------------------------


@dataclass
class _Job:
    images: torch.Tensor  # uint8 [n, 1, 28, 28]
    future: asyncio.Future


@dataclass
class MicroBatcher:
    """Collects requests for up to `max_wait_s` or `max_batch` images, then runs one forward pass.

    The forward pass runs on one worker thread, so the event loop keeps accepting and decoding
    requests meanwhile; those requests form the next batch. No pass holds more than `max_batch`
    images: a bigger request is split into parts, and a request that would not fit waits for the next pass.
    """

    model: nn.Module
    max_batch: int = DEFAULTS.max_batch
    max_wait_s: float = DEFAULTS.max_wait_ms / 1000
    batches: int = 0  # forward passes so far
    images: int = 0  # images through them
    largest: int = 0  # the most images one pass has held
    _queue: asyncio.Queue | None = field(default=None, repr=False)
    _held: _Job | None = field(default=None, repr=False)  # taken from the queue, but too big for the last pass
    _executor: ThreadPoolExecutor | None = field(default=None, repr=False)
    _task: asyncio.Task | None = field(default=None, repr=False)

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="lenet-forward")
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    async def on_forward_thread(self, function: Callable[..., Any], *args: Any) -> Any:
        """`function(*args)` on the thread the forward passes run on, between two passes (a model is
        never run by two threads at once)."""
        if self._executor is None:
            raise RuntimeError("MicroBatcher.start() was not called")
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    async def __call__(self, images: torch.Tensor) -> list[Prediction]:
        """All classes, most probable first, for uint8 images [n, 1, 28, 28]."""
        if self._queue is None:
            raise RuntimeError("MicroBatcher.start() was not called")
        futures = []
        for part in images.split(self.max_batch):
            futures.append(asyncio.get_running_loop().create_future())
            await self._queue.put(_Job(part, futures[-1]))
        return [p for part in await asyncio.gather(*futures) for p in part]

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = await self._collect()
            batch = torch.cat([job.images for job in jobs])
            try:
                predictions = await loop.run_in_executor(self._executor, predict, self.model, batch, len(classes_of(self.model)))
            except Exception as e:  # a failed pass fails its requests, never the server
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(e)
                continue
            self.batches, self.images = self.batches + 1, self.images + len(batch)
            self.largest = max(self.largest, len(batch))
            start = 0
            for job in jobs:
                if not job.future.done():  # its client may have gone
                    job.future.set_result(predictions[start : start + len(job.images)])
                start += len(job.images)

    async def _collect(self) -> list[_Job]:
        assert self._queue is not None
        first, self._held = self._held or await self._queue.get(), None
        jobs, count = [first], len(first.images)
        deadline = asyncio.get_running_loop().time() + self.max_wait_s
        while count < self.max_batch:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0 and self._queue.empty():
                break
            try:
                job = self._queue.get_nowait() if remaining <= 0 else await asyncio.wait_for(self._queue.get(), remaining)
            except (asyncio.TimeoutError, asyncio.QueueEmpty):
                break
            if count + len(job.images) > self.max_batch:
                self._held = job  # first in the next pass, so requests keep their order
                break
            jobs.append(job)
            count += len(job.images)
        return jobs


# --- decoding ---------------------------------------------------------------------------------


class PixelBudgetError(LenetError):
    """A request whose images hold more pixels in all than the server decodes for one request."""


@dataclass
class Decoder:
    """Decodes a request's uploads on worker threads, within a pixel budget, in two lanes.

    Each request first takes a light slot: its images' headers are read (no pixel decoded), their
    pixels summed and held against `budget` (PixelBudgetError); when they hold at most `light_pixels`
    the images are decoded in the same step. A request of larger images gives its light slot back
    and waits for a heavy slot. Each lane is a semaphore over a thread pool of its own, as many threads
    as slots, so a heavy decode never holds up a light one, and at most `heavy` cores
    ever decode large images, however many clients send them. The heavy threads run at a lower
    priority (`niceness`), so those cores go to the event loop and the forward passes first.

    Each image is decoded with an explicit bound (`decode_image(..., max_pixels)`): nothing here
    changes Pillow's process-wide MAX_IMAGE_PIXELS or the warning filters from a thread.
    """

    budget: int = DEFAULTS.max_request_pixels
    light_pixels: int = DEFAULTS.light_pixels
    light: int = DEFAULTS.light_decodes
    heavy: int = DEFAULTS.heavy_decodes
    niceness: int = DEFAULTS.heavy_niceness
    light_requests: int = 0  # requests decoded in each lane so far
    heavy_requests: int = 0
    refused: int = 0  # requests over the budget
    _executor: ThreadPoolExecutor | None = field(default=None, repr=False)
    _heavy_executor: ThreadPoolExecutor | None = field(default=None, repr=False)
    _light_slots: asyncio.Semaphore | None = field(default=None, repr=False)
    _heavy_slots: asyncio.Semaphore | None = field(default=None, repr=False)

    def start(self) -> None:
        self._executor = ThreadPoolExecutor(self.light, thread_name_prefix="lenet-decode")
        self._heavy_executor = ThreadPoolExecutor(self.heavy, thread_name_prefix="lenet-decode-heavy",
                                                  initializer=_lower_priority, initargs=(self.niceness,))  # fmt: skip
        self._light_slots, self._heavy_slots = asyncio.Semaphore(self.light), asyncio.Semaphore(self.heavy)

    def stop(self) -> None:
        for executor in (self._executor, self._heavy_executor):
            if executor is not None:
                executor.shutdown(wait=True)

    async def run(self, function: Callable[..., Any], *args: Any) -> Any:
        """Any light work (JSON pixels to images) in a light slot, off the event loop."""
        assert self._executor is not None and self._light_slots is not None, "Decoder.start() was not called"
        async with self._light_slots:
            return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    async def __call__(self, blobs: list[tuple[str, bytes]]) -> list[tuple[str, torch.Tensor]]:
        """(name, uint8 [1, 28, 28]) for each (name, encoded bytes), in order."""
        decoded = await self.run(self._measure_and_decode_light, blobs)
        if decoded is not None:
            self.light_requests += 1
            return decoded
        assert self._heavy_slots is not None
        async with self._heavy_slots:
            self.heavy_requests += 1
            return await asyncio.get_running_loop().run_in_executor(self._heavy_executor, self._decode, blobs)

    def _measure_and_decode_light(self, blobs: list[tuple[str, bytes]]) -> list[tuple[str, torch.Tensor]] | None:
        sizes = [image_size(data, name) for name, data in blobs]
        pixels = sum(width * height for width, height in sizes)
        if pixels > self.budget:
            self.refused += 1
            largest = max(range(len(sizes)), key=lambda i: sizes[i][0] * sizes[i][1])
            (width, height), name = sizes[largest], blobs[largest][0]
            raise PixelBudgetError(
                f"{len(blobs)} image{'s' * (len(blobs) > 1)} of {pixels:,} pixels in all (the largest {name}, "
                f"{width}x{height}) is over this server's limit of {self.budget:,} pixels per request")
        return self._decode(blobs) if pixels <= self.light_pixels else None

    def _decode(self, blobs: list[tuple[str, bytes]]) -> list[tuple[str, torch.Tensor]]:
        bound = min(MAX_PIXELS, self.budget)
        return [(name, decode_image(data, name, bound)) for name, data in blobs]


def _lower_priority(niceness: int) -> None:
    """This thread's niceness raised by `niceness`: on Linux a thread's priority is its own (elsewhere the
    whole process's would change, so there it stays as it is)."""
    if niceness and sys.platform.startswith("linux"):
        import threading

        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), os.getpriority(os.PRIO_PROCESS, 0) + niceness)
        except OSError:  # a sandbox that forbids it: the lane still holds `heavy` threads at most
            pass


# --- request bodies ---------------------------------------------------------------------------


def _json_body_model():
    from pydantic import BaseModel, Field, StrictFloat, StrictInt

    # fail_fast: each list stops at its first bad item, so a body of 50,000 bad pixels costs one
    # error, not 50,000 (which took seconds to list and megabytes to send).
    side = Field(min_length=IMAGE_SIZE, max_length=IMAGE_SIZE, fail_fast=True)
    Row = Annotated[list[Union[StrictInt, StrictFloat]], side]
    Image = Annotated[list[Row], side]

    class PixelImages(BaseModel):
        """28x28 grey images as pixel rows. An image of JSON integers is read as 0-255; one with any
        number written with a decimal point or exponent is read as floats in [0, 1]."""

        images: Annotated[list[Image], Field(min_length=1, max_length=MAX_IMAGES, fail_fast=True)]

    return PixelImages


def _response_models() -> SimpleNamespace:
    """The answers' shapes, for the OpenAPI schema (/docs); the tests validate real answers against them."""
    from pydantic import BaseModel, ConfigDict, Field

    class ClassProbability(BaseModel):
        model_config = ConfigDict(populate_by_name=True)
        class_: str = Field(alias="class", description="a class of the model's data set")
        probability: float = Field(ge=0, le=1, description=f"rounded to {DIGITS} decimals")

    class ImagePrediction(BaseModel):
        name: str = Field(description="the file's name, or images[i] for JSON pixels")
        label: str = Field(description="the most probable class")
        top: list[ClassProbability] = Field(description="top_k classes, most probable first")
        pixels: list[list[int]] | None = Field(None, description="with ?pixels=true: the 28x28 input the model saw, 0-255")

    class Predictions(BaseModel):
        predictions: list[ImagePrediction] = Field(description="one per image, in the order sent")
        views: str = Field(description="the test-time views averaged for each image (lenet serve --views)")

    class FeatureMaps(BaseModel):
        layer: str = Field(description="the activation's module in the network, e.g. conv.2")
        kind: str = Field(description="its type, e.g. ReLU")
        block: int = Field(description="1: the first convolution's block, 2: the second's")
        shape: list[int] = Field(description="the block's output: [channels, height, width]")
        channels: list[int] = Field(description="the channels in `maps`: the ones the run's report draws")
        maps: list[list[list[float]]] = Field(description="[len(channels), height, width], after the activation")
        range: list[float] = Field(description="[lowest, highest] over all the block's channels")

    class HiddenLayer(BaseModel):
        layer: str = Field(description="the activation's module, e.g. fc.2")
        kind: str
        values: list[float] = Field(description="one per unit of the fully connected layer, after its activation")

    class Layers(BaseModel):
        name: str
        pixels: list[list[int]] = Field(description="the 28x28 input the network saw, 0-255")
        views: str = Field(description="what was passed through the network")
        conv: list[FeatureMaps]
        hidden: list[HiddenLayer]
        classes: list[str]
        logits: list[float] = Field(description="the last layer's outputs, one per class, in `classes` order")
        probabilities: list[float] = Field(description="softmax of the logits, in `classes` order")
        label: str = Field(description="the most probable class of this pass")

    class Problem(BaseModel):
        loc: list[str | int] = Field(description="where: body, images, the image's index, row, column")
        msg: str
        type: str | None = None

    class Error(BaseModel):
        detail: str | list[Problem] = Field(description="one line, or (422) the first few problems found")

    class ModelInfo(BaseModel):
        model_config = ConfigDict(extra="allow")
        name: str | None = Field(description="the recipe's model, when the checkpoint sits in a run")
        config: dict[str, Any] = Field(description="the network's options")
        views: dict[str, Any] = Field(description="the test-time views averaged by /predict")
        parameters: int
        data_set: str
        classes: list[str]
        test_accuracy: float | None = Field(description="the run's, when it has one")
        runtime: str = Field(description="what runs the model: ONNX Runtime or PyTorch, with versions")

    class Decodes(BaseModel):
        light: int = Field(description="requests decoded in the light lane")
        heavy: int = Field(description="requests of large images, decoded in the heavy lane")
        over_budget: int = Field(description="requests refused (413) for holding too many pixels")

    class Health(BaseModel):
        status: str
        forward_passes: int
        images: int = Field(description="images through those passes")
        largest_pass: int
        max_batch: int
        decodes: Decodes

    class Sample(BaseModel):
        index: int = Field(description="in the test set")
        label: str = Field(description="its true class")
        url: str = Field(description="its PNG")

    return SimpleNamespace(**{m.__name__: m for m in (Predictions, Layers, Error, ModelInfo, Health, Sample)})


def _responses(schemas: SimpleNamespace, ok: type, what: str) -> dict[int | str, dict[str, Any]]:
    """An image endpoint's answers: 200 and every refusal, each with its reason in `detail`."""
    error = schemas.Error
    return {
        200: {"model": ok, "description": what},
        400: {"model": error, "description": "an image that cannot be decoded, no image files in the form, or too many images"},
        413: {"model": error, "description": f"a body over the size limit, or images holding more pixels than the "
                                             f"server's limit per request (--max-request-pixels, default {DEFAULTS.max_request_pixels:,})"},
        415: {"model": error, "description": "a body that is neither multipart/form-data nor application/json"},
        422: {"model": error, "description": "JSON that is not 28x28 images of pixels in range, or a bad query parameter"},
    }  # fmt: skip


def pixels_to_uint8(image: list[list[int | float]], where: str) -> torch.Tensor:
    """One 28x28 JSON image as uint8 [28, 28]; ints are 0-255, floats are [0, 1]."""
    floats = any(isinstance(v, float) for row in image for v in row)
    values = torch.tensor(image, dtype=torch.float64)
    if not values.isfinite().all():  # NaN or infinity: JSON has neither, but Python's parsers take both
        raise ValueError(f"{where}: pixel values must be finite numbers")
    low, high = (0.0, 1.0) if floats else (0, 255)
    if values.min() < low or values.max() > high:
        kind = "float pixels must be in [0, 1]" if floats else "integer pixels must be in 0-255"
        raise ValueError(f"{where}: {kind}, got values from {values.min().item():g} to {values.max().item():g}")
    return (values * 255).round().to(torch.uint8) if floats else values.to(torch.uint8)


# --- the app ----------------------------------------------------------------------------------


def serving_model(model: Classifier, settings: ServeSettings, images: torch.Tensor) -> tuple[Classifier, str]:
    """The model that answers requests, and a note when `auto` could not take ONNX Runtime.

    ONNX Runtime serves only once it has answered the first `verify_images` test images as
    PyTorch does (same class for each, logits within export.TOLERANCE); asked for by name, its
    absence or a failed check is an error; under `auto`, PyTorch serves and the note says why.
    """
    from lenet.inference.export import onnx_runtime

    if settings.runtime not in RUNTIMES:
        raise ServeError(f"unknown runtime {settings.runtime!r}; choose from {', '.join(RUNTIMES)}")
    if settings.runtime == "torch":
        return model, ""
    try:
        return onnx_runtime(model, images[: settings.verify_images], settings.runtime_threads), ""
    except LenetError as e:
        if settings.runtime == "onnxruntime":
            raise ServeError(f"--runtime onnxruntime: {e}") from None
        return model, f"serving with PyTorch: {e}"


def with_views(model: Classifier, choice: str) -> Classifier:
    """The model averaging the test-time views `choice` names (VIEW_CHOICES), over the same network."""
    if choice not in VIEW_CHOICES:
        raise ServeError(f"unknown views {choice!r}; choose from {', '.join(VIEW_CHOICES)}")
    if choice == "recorded":
        return model
    views = Views(flip=True) if choice == "mirror" else Views()
    return Classifier(model.net, views, model.data).eval()


def run_info(weights: Path, model: nn.Module) -> dict[str, Any]:
    """What GET /model answers: the model and, when it sits in a run directory, the run's figures."""
    from lenet.training.runs import CONFIG_FILE, SUMMARY_FILE, read_optional_json

    # A bare checkpoint file has no run files beside it: then both are empty.
    config, summary = (read_optional_json(weights.parent / name) for name in (CONFIG_FILE, SUMMARY_FILE))
    # Nothing that names a path on the server: the checkpoint by its file name, a folder data set by its kind and name.
    return {
        "name": config.get("recipe", {}).get("model"),
        "checkpoint": weights.name,
        "config": model.net.config.to_dict(),
        "views": model.views.to_dict(),
        "parameters": count_parameters(model),
        "data_set": shown_name(model.data.name),
        "classes": list(model.data.classes),
        "test_accuracy": summary.get("test", {}).get("accuracy"),
        "runtime": getattr(model, "runtime", f"torch {torch.__version__}"),
    }


def pick_samples(images: torch.Tensor, labels: torch.Tensor, per_class: int = SAMPLES_PER_CLASS) -> list[int]:
    """The first `per_class` test images of each class, in class order: the same row every time."""
    classes = int(labels.max()) + 1 if len(labels) else 0
    return [i for c in range(classes) for i in (labels == c).nonzero().flatten()[:per_class].tolist()]


def create_app(
    model: nn.Module,
    info: dict[str, Any],
    test_images: torch.Tensor | None = None,
    test_labels: torch.Tensor | None = None,
    settings: ServeSettings = DEFAULTS,
):
    from fastapi import HTTPException, Query, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.openapi.docs import get_redoc_html
    from fastapi.responses import FileResponse, JSONResponse, Response
    from fastapi.staticfiles import StaticFiles
    from fastapi_offline import FastAPIOffline
    from pydantic import ValidationError
    from starlette.datastructures import UploadFile

    batcher = MicroBatcher(model, settings.max_batch, settings.max_wait_ms / 1000)
    decoder = Decoder(settings.max_request_pixels, settings.light_pixels, settings.light_decodes, settings.heavy_decodes,
                      settings.heavy_niceness)  # fmt: skip
    PixelImages = _json_body_model()
    schemas = _response_models()
    classes = classes_of(model)
    views_served = model.views.describe() if isinstance(model, Classifier) else "the image alone"
    samples = pick_samples(test_images, test_labels) if test_images is not None and test_labels is not None else []

    @asynccontextmanager
    async def lifespan(_app):
        decoder.start()
        await batcher.start()
        yield
        await batcher.stop()
        decoder.stop()

    # FastAPI's own /docs and /redoc load their scripts from public CDNs: blank pages offline.
    # fastapi-offline serves the same Swagger UI and ReDoc from files in its package.
    app = FastAPIOffline(title="lenet", version=__version__, lifespan=lifespan, static_url=DOCS_ASSETS, redoc_url=None,
                         description=f"LeNet on {info.get('data_set', 'its data set')}: classify 28x28 grey images.")  # fmt: skip
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.exception_handler(PixelBudgetError)
    async def over_budget(_request, e: PixelBudgetError):
        return JSONResponse({"detail": clip(str(e))}, status_code=413)

    @app.exception_handler(LenetError)
    async def bad_input(_request, e: LenetError):
        return JSONResponse({"detail": clip(str(e))}, status_code=400)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request, e: RequestValidationError):
        return JSONResponse({"detail": brief_errors(e.errors())}, status_code=422)

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(STATIC / "index.html")

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> Response:
        # ReDoc draws its maker's logo from their CDN; the policy keeps the browser to this server
        # (the logo is then left out), so the page is the same offline as online.
        page = get_redoc_html(openapi_url=app.openapi_url, title="lenet - ReDoc", with_google_fonts=False,
                              redoc_js_url=f"{DOCS_ASSETS}/redoc.standalone.js", redoc_favicon_url="data:,")
        return Response(page.body, media_type="text/html", headers={"Content-Security-Policy": SAME_ORIGIN_ONLY})

    # The response models document the answers in /docs; the endpoints build plain dicts (validating
    # every answer against its model would cost each request time, and the tests check them instead).
    @app.get("/healthz", response_model=None, responses={200: {"model": schemas.Health}})
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "forward_passes": batcher.batches, "images": batcher.images,
                "largest_pass": batcher.largest, "max_batch": batcher.max_batch,
                "decodes": {"light": decoder.light_requests, "heavy": decoder.heavy_requests,
                            "over_budget": decoder.refused}}  # fmt: skip

    @app.get("/model", response_model=None, responses={200: {"model": schemas.ModelInfo}})
    async def model_info() -> dict[str, Any]:
        return info

    @app.get("/samples", response_model=None, responses={200: {"model": list[schemas.Sample]}})
    async def sample_list() -> list[dict[str, Any]]:
        """Test images to try, one entry per image: its index, true class and PNG address."""
        return [{"index": i, "label": classes[int(test_labels[i])], "url": f"/samples/{i}.png"} for i in samples]

    @app.get("/samples/{index}.png", response_class=Response,
             responses={200: {"content": {"image/png": {}}, "description": "the test image, 28x28 grey"},
                        404: {"model": schemas.Error, "description": "no test image of that index"}})  # fmt: skip
    async def sample_png(index: int) -> Response:
        if test_images is None or not 0 <= index < len(test_images):
            raise HTTPException(404, f"no test image {index}")
        return Response(_png(test_images[index]), media_type="image/png")

    async def images_from_form(request: Request) -> list[tuple[str, torch.Tensor]]:
        form = await request.form(max_files=MAX_IMAGES, max_fields=MAX_IMAGES)
        uploads = [v for _, v in form.multi_items() if isinstance(v, UploadFile)]
        if not uploads:
            raise HTTPException(400, "no image files in the form: send them as multipart fields named 'files'")
        blobs = [(clip(u.filename or f"upload {i}", 100), await u.read()) for i, u in enumerate(uploads)]
        return await decoder(blobs)

    async def images_from_json(request: Request) -> list[tuple[str, torch.Tensor]]:
        try:
            body = PixelImages.model_validate_json(await request.body())
        except ValidationError as e:
            errors = e.errors(include_url=False, include_input=False)[:MAX_ERRORS]
            raise RequestValidationError([{**error, "loc": ("body", *error["loc"])} for error in errors]) from None

        def convert() -> list[tuple[str, torch.Tensor]]:
            return [(f"images[{i}]", from_pixels(pixels_to_uint8(img, f"images[{i}]"))) for i, img in enumerate(body.images)]

        try:
            return await decoder.run(convert)
        except ValueError as e:
            raise HTTPException(422, str(e)) from None

    async def images_from_body(request: Request) -> list[tuple[str, torch.Tensor]]:
        content_type = request.headers.get("content-type", "")
        if content_type.startswith("multipart/form-data"):
            named = await images_from_form(request)
        elif content_type.startswith("application/json"):
            named = await images_from_json(request)
        else:
            raise HTTPException(415, "send multipart/form-data image files or an application/json body")
        if len(named) > MAX_IMAGES:
            raise HTTPException(400, f"{len(named)} images in one request; at most {MAX_IMAGES}")
        return named

    @app.post("/predict", openapi_extra=_body_openapi(PixelImages), response_model=None,
              responses=_responses(schemas, schemas.Predictions, "each image's most probable classes, in the order sent"))  # fmt: skip
    async def predict_endpoint(
        request: Request,
        top_k: Annotated[int, Query(ge=1, le=len(classes), description="classes per image, as `lenet predict --top-k`")] = DEFAULT_TOP_K,
        pixels: Annotated[bool, Query(description="also return the 28x28 input the model saw")] = False,
    ) -> dict[str, Any]:
        """Classify images: multipart image files (any PNG/JPEG, prepared as `lenet predict` does) or
        JSON `{"images": [...]}` of 28x28 pixel arrays. Answers in the order sent, with the keys of
        `lenet predict --json`."""
        named = await images_from_body(request)
        images = torch.stack([tensor for _, tensor in named])
        predictions = await batcher(images)
        results = []
        for (name, tensor), p in zip(named, predictions):
            result = prediction_record(name, Prediction(p.top[:top_k]))
            if pixels:
                result["pixels"] = tensor[0].tolist()
            results.append(result)
        return {"predictions": results, "views": views_served}

    @app.post("/layers", openapi_extra=_body_openapi(PixelImages, one=True), response_model=None,
              responses=_responses(schemas, schemas.Layers, "what each layer of one pass of the network sees"))  # fmt: skip
    async def layers_endpoint(request: Request) -> Response:
        """What each layer sees, for one image (a multipart file or JSON `{"images": [one]}`), from one
        pass of the trained network over the image as shown (no test-time views): the first and the
        second convolution's feature maps after their activation (the channels the run's report draws),
        the fully connected layers' activations, the logits and the class probabilities, as arrays."""
        named = await images_from_body(request)
        if len(named) != 1:
            raise HTTPException(400, f"/layers looks at one image at a time; got {len(named)}")
        (name, image), = named
        seen = await batcher.on_forward_thread(layer_activations, getattr(model, "net", model), image.unsqueeze(0))
        # Straight to JSON: FastAPI's encoder would walk the ~20,000 numbers once more first.
        return JSONResponse(layers_record(name, image, seen, classes))

    return app


def layers_record(name: str, image: torch.Tensor, seen: LayerActivations, classes: Sequence[str]) -> dict[str, Any]:
    """POST /layers's answer for one image: every array as nested lists, rounded."""
    probabilities = seen.logits[0].double().softmax(0)
    return {
        "name": name,
        "pixels": image[0].tolist(),
        "views": "the image alone: one pass of the network, without the test-time views",
        "conv": [{"layer": maps.layer, "kind": maps.kind, "block": maps.block, "shape": list(maps.maps.shape[1:]),
                  "channels": (shown := channels_shown(maps.maps.shape[1])),
                  "maps": _rounded(maps.maps[0, shown]),
                  "range": [round(float(maps.maps[0].min()), LAYER_DIGITS), round(float(maps.maps[0].max()), LAYER_DIGITS)]}
                 for maps in seen.conv],  # fmt: skip
        "hidden": [{"layer": h.layer, "kind": h.kind, "values": _rounded(h.values[0])} for h in seen.hidden],
        "classes": list(classes),
        "logits": _rounded(seen.logits[0]),
        "probabilities": [round(p, DIGITS) for p in probabilities.tolist()],
        "label": classes[int(probabilities.argmax())],
    }


LAYER_DIGITS = 4  # decimals of an activation in POST /layers: a page draws them, 16-bit colour at most


def _rounded(values: torch.Tensor) -> Any:
    return values.double().round(decimals=LAYER_DIGITS).tolist()


def clip(text: str, limit: int = MAX_MESSAGE) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def brief_errors(errors: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The first few validation problems, each its place, message and kind: never the input echoed back."""
    return [{"loc": list(e.get("loc", ()))[:8], "msg": clip(str(e.get("msg", ""))), "type": e.get("type")}
            for e in errors[:MAX_ERRORS]]  # fmt: skip


def _png(image: torch.Tensor) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image[0].numpy()).save(buffer, format="PNG")
    return buffer.getvalue()


def _body_openapi(PixelImages, one: bool = False) -> dict[str, Any]:
    # One endpoint takes two body types, which FastAPI cannot declare from the signature.
    json_schema = PixelImages.model_json_schema()
    if one:
        json_schema = {**json_schema, "properties": {**json_schema["properties"],
                       "images": {**json_schema["properties"]["images"], "maxItems": 1}}}  # fmt: skip
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {"files": {"type": "array", "items": {"type": "string", "format": "binary"},
                                                 **({"maxItems": 1} if one else {})}},
                        "required": ["files"],
                    }
                },
                "application/json": {"schema": json_schema},
            },
        }
    }


class BodyLimit:
    """413 for a request body over `max_bytes`: at once from Content-Length, or as a chunked body streams in."""

    def __init__(self, app: Callable[..., Awaitable[None]], max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length", b"")
        if length.isdigit() and int(length) > self.max_bytes:
            from starlette.responses import JSONResponse

            detail = f"request body of {int(length):,} bytes is over the limit of {self.max_bytes:,}"
            return await JSONResponse({"detail": detail}, status_code=413)(scope, receive, send)
        received = 0

        async def counted_receive():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                from fastapi import HTTPException

                # Raised inside the endpoint's read, so FastAPI answers it like any HTTPException.
                raise HTTPException(413, f"request body is over the limit of {self.max_bytes:,} bytes")
            return message

        await self.app(scope, counted_receive, send)


# --- the command ------------------------------------------------------------------------------


def require_serve_extra() -> None:
    try:
        import fastapi  # noqa: F401
        import fastapi_offline  # noqa: F401  (for /docs without a network)
        import python_multipart  # noqa: F401  (for file uploads)
        import uvicorn  # noqa: F401
    except ImportError as e:
        raise ServeError(f"lenet serve needs fastapi, fastapi-offline, uvicorn and python-multipart "
                         f"({e.name} is missing): pip install 'lenet[serve]'") from None  # fmt: skip


def bind(host: str, port: int) -> socket.socket:
    """A listening socket, bound here so a busy port or a bad address is one clear error."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
    except (OSError, UnicodeError) as e:
        raise ServeError(f"cannot listen on {host}:{port}: {getattr(e, 'strerror', None) or e}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as e:
        sock.close()
        raise ServeError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    return sock


def exposure_warning(sock: socket.socket) -> str | None:
    """A warning when the socket listens on every interface, not one address."""
    host = sock.getsockname()[0]
    if not ipaddress.ip_address(host).is_unspecified:
        return None
    return (f"lenet serve: warning: listening on all interfaces ({host}): anyone who can reach this machine "
            "can use the model; --host 127.0.0.1 keeps it to this machine")  # fmt: skip


def serve(
    run_or_checkpoint: str,
    host: str = "127.0.0.1",
    port: int = 8000,
    device: str = "auto",
    data_dir: str | None = None,
    settings: ServeSettings = DEFAULTS,
    dataset: str | None = None,
) -> int:
    require_serve_extra()
    import uvicorn

    from lenet.data.load import load_model_data
    from lenet.core.device import resolve_device

    # LeNet's passes are tiny: PyTorch's intra-op threads only spin against the event loop on a small machine.
    torch.set_num_threads(1)
    quiet_pillow_warnings()  # once, here on the main thread: the decoding threads never touch the filters
    weights = resolve_weights(run_or_checkpoint)
    model = with_views(load(weights, resolve_device(device)), settings.views)
    # The test images it checks ONNX Runtime on and shows at /samples: a user's own data only when named (--dataset).
    data = load_model_data(model.data, dataset, data_dir, own=True)
    model, note = serving_model(model, settings, data.test_images)
    if note:
        print(note, file=sys.stderr, flush=True)
    info = {**run_info(weights, model), "lenet_version": __version__}
    app = create_app(model, info, data.test_images, data.test_labels, settings)
    sock = bind(host, port)
    if warning := exposure_warning(sock):
        print(warning, file=sys.stderr, flush=True)
    bound_host, bound_port = sock.getsockname()[:2]
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    print(f"serving {info['name'] or 'model'} from {weights} at http://{shown}:{bound_port}/ "
          f"(API docs at /docs); Ctrl-C stops", flush=True)  # fmt: skip
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    server.run(sockets=[sock])
    return 0
