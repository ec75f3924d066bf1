"""`lenet serve`: a run's model behind a small HTTP API and a web page to try it.

    POST /predict      image files (multipart) or {"images": [28x28 pixel arrays]} -> top-k classes
    GET  /model        model config, parameter count, classes, the run's test accuracy
    GET  /healthz      liveness, and how many forward passes served how many images
    GET  /samples      a few test images (GET /samples/{index}.png) for the page to try
    GET  /             the page; /docs and /redoc are the OpenAPI documentation, served offline

Every image goes through `inference.decode_image` / `from_pixels` (-> `to_fashion_mnist`) and
`inference.predict`: the same code as `lenet predict`, so the server and the CLI cannot disagree.
Requests that arrive together share one forward pass (MicroBatcher), of at most `max_batch` images.
"""

import asyncio
import io
import ipaddress
import socket
import sys
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Union

import torch
from torch import nn

from lenet.core.version import __version__
from lenet.training.checkpoint import load, resolve_weights
from lenet.data.registry import IMAGE_SIZE, shown_name
from lenet.core.errors import LenetError, ServeError
from lenet.inference.predict import Prediction, predict
from lenet.data.images import decode_image, from_pixels
from lenet.models.lenet import count_parameters
from lenet.models.views import Classifier, classes_of

STATIC = Path(__file__).parent / "static"
MAX_IMAGES = 64  # per request
SAMPLES_PER_CLASS = 2
DOCS_ASSETS = "/docs-assets"  # where fastapi-offline serves Swagger UI's and ReDoc's files
# Nothing but this server: what a page's scripts may fetch (data: and blob: are made in the page itself).
SAME_ORIGIN_ONLY = ("default-src 'self' data: blob:; script-src 'self' 'unsafe-inline' blob:; "
                    "style-src 'self' 'unsafe-inline'")
MAX_ERRORS = 5  # problems listed in one error reply: the first ones found
MAX_MESSAGE = 300  # characters of one error message (a file name in it may be any length)
INLINE_DECODE_BYTES = 64 * 2**10  # uploads up to this size are decoded on the event loop
RUNTIMES = ("auto", "onnxruntime", "torch")


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


def pixels_to_uint8(image: list[list[int | float]], where: str) -> torch.Tensor:
    """One 28x28 JSON image as uint8 [28, 28]; ints are 0-255, floats are [0, 1]."""
    floats = any(isinstance(v, float) for row in image for v in row)
    values = torch.tensor(image, dtype=torch.float64)
    low, high = (0.0, 1.0) if floats else (0, 255)
    if values.min() < low or values.max() > high or values.isnan().any():
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
    from starlette.concurrency import run_in_threadpool
    from starlette.datastructures import UploadFile

    batcher = MicroBatcher(model, settings.max_batch, settings.max_wait_ms / 1000)
    PixelImages = _json_body_model()
    samples = pick_samples(test_images, test_labels) if test_images is not None and test_labels is not None else []

    @asynccontextmanager
    async def lifespan(_app):
        await batcher.start()
        yield
        await batcher.stop()

    # FastAPI's own /docs and /redoc load their scripts from public CDNs: blank pages offline.
    # fastapi-offline serves the same Swagger UI and ReDoc from files in its package.
    app = FastAPIOffline(title="lenet", version=__version__, lifespan=lifespan, static_url=DOCS_ASSETS, redoc_url=None,
                         description=f"LeNet on {info.get('data_set', 'its data set')}: classify 28x28 grey images.")  # fmt: skip
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

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

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "forward_passes": batcher.batches, "images": batcher.images,
                "largest_pass": batcher.largest, "max_batch": batcher.max_batch}  # fmt: skip

    @app.get("/model")
    async def model_info() -> dict[str, Any]:
        return info

    @app.get("/samples")
    async def sample_list() -> list[dict[str, Any]]:
        """Test images to try, one entry per image: its index, true class and PNG address."""
        return [{"index": i, "label": classes_of(model)[int(test_labels[i])], "url": f"/samples/{i}.png"} for i in samples]

    @app.get("/samples/{index}.png", response_class=Response)
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
        decode = lambda: [(name, decode_image(data, name)) for name, data in blobs]  # noqa: E731
        # A big image takes a while to decode: off the event loop, so other requests keep moving.
        # A small one decodes faster than a hop to a worker thread would take.
        return decode() if sum(len(d) for _, d in blobs) <= INLINE_DECODE_BYTES else await run_in_threadpool(decode)

    async def images_from_json(request: Request) -> list[tuple[str, torch.Tensor]]:
        try:
            body = PixelImages.model_validate_json(await request.body())
        except ValidationError as e:
            errors = e.errors(include_url=False, include_input=False)[:MAX_ERRORS]
            raise RequestValidationError([{**error, "loc": ("body", *error["loc"])} for error in errors]) from None

        def convert() -> list[tuple[str, torch.Tensor]]:
            return [(f"images[{i}]", from_pixels(pixels_to_uint8(img, f"images[{i}]"))) for i, img in enumerate(body.images)]

        try:
            return await run_in_threadpool(convert)
        except ValueError as e:
            raise HTTPException(422, str(e)) from None

    @app.post("/predict", openapi_extra=_predict_openapi(PixelImages))
    async def predict_endpoint(
        request: Request,
        top_k: Annotated[int, Query(ge=1, le=len(classes_of(model)), description="classes per image")] = 3,
        pixels: Annotated[bool, Query(description="also return the 28x28 input the model saw")] = False,
    ) -> dict[str, Any]:
        """Classify images: multipart image files (any PNG/JPEG, prepared as `lenet predict` does) or
        JSON `{"images": [...]}` of 28x28 pixel arrays. Answers in the order sent."""
        content_type = request.headers.get("content-type", "")
        if content_type.startswith("multipart/form-data"):
            named = await images_from_form(request)
        elif content_type.startswith("application/json"):
            named = await images_from_json(request)
        else:
            raise HTTPException(415, "send multipart/form-data image files or an application/json body")
        if len(named) > MAX_IMAGES:
            raise HTTPException(400, f"{len(named)} images in one request; at most {MAX_IMAGES}")
        images = torch.stack([tensor for _, tensor in named])
        predictions = await batcher(images)
        results = []
        for (name, tensor), p in zip(named, predictions):
            result = {"name": name, **Prediction(p.top[:top_k]).to_dict()}
            if pixels:
                result["pixels"] = tensor[0].tolist()
            results.append(result)
        return {"predictions": results}

    return app


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


def _predict_openapi(PixelImages) -> dict[str, Any]:
    # One endpoint takes two body types, which FastAPI cannot declare from the signature.
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {"files": {"type": "array", "items": {"type": "string", "format": "binary"}}},
                        "required": ["files"],
                    }
                },
                "application/json": {"schema": PixelImages.model_json_schema()},
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
    weights = resolve_weights(run_or_checkpoint)
    model = load(weights, resolve_device(device))
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
