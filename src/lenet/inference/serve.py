"""`lenet serve`: a run's model behind a small HTTP API and a web page to try it.

    POST /predict      image files (multipart) or {"images": [S x S pixel arrays]} -> top-k classes
    POST /layers       one image, the same two ways -> what each layer of one pass sees, as arrays
    GET  /model        model config, parameter count, classes, the run's test accuracy
    GET  /healthz      liveness, and how many forward passes served how many images
    GET  /samples      a few test images (GET /samples/{index}.png) for the page to try
    GET  /             the page; /docs and /redoc are the OpenAPI documentation, served offline

Every image goes through `lenet.data.images.decode_image` / `from_pixels` (-> `prepared`, in the model's
channels and side) and `lenet.inference.predict`: the same code as `lenet predict`, so the server and the CLI
cannot disagree. A grey model's JSON images are S rows of S pixels, a colour model's S rows of S [r, g, b].
Requests that arrive together share one forward pass (batcher.MicroBatcher), of at most `max_batch`
images. The settings and their defaults are settings.py's; the bodies' and answers' schemas schemas.py's.

Decoding is bounded (decoding.Decoder): a request's images may hold `max_request_pixels` in all, read from
their headers before any pixel is decoded (else 413); no pixel is decoded on the event loop: a light
request's images are decoded on the forward thread just before their pass (batcher.Later), and a request
whose images are large decodes in a lane of its own, so a client that sends decompression-heavy images
waits on itself, not on everyone else.
"""

import io
import ipaddress
import socket
import sys
from collections.abc import Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Annotated, Any

import torch
from torch import nn

from lenet.core.version import __version__
from lenet.runs.checkpoint import load, resolve_weights
from lenet.runs.directory import run_records
from lenet.runs.samples import first_per_class
from lenet.data.dataset import Dataset
from lenet.data.registry import shown_name
from lenet.core.cpushare import registered
from lenet.core.errors import LenetError, ServeError
from lenet.core.text import clip
from lenet.insight.analysis import LayerActivations, channels_shown, layer_activations
from lenet.inference.predict import DEFAULT_TOP_K, DIGITS, Prediction, prediction_record
from lenet.data.images import from_pixels, quiet_pillow_warnings
from lenet.models.lenet import count_parameters
from lenet.models.views import Classifier, Views, classes_of, input_shape
from lenet.core.device import resolve_device
from lenet.inference.batcher import Later, MicroBatcher, made
from lenet.inference.decoding import Decoder, PixelBudgetError
from lenet.inference.export import checking_data, exported_runtime, onnx_int8_runtime, onnx_runtime
from lenet.inference.schemas import (SHAPE_PROBLEMS, body_openapi, image_responses, image_words, json_body_model,
                                     pixels_json, pixels_to_uint8, response_models)  # fmt: skip
from lenet.inference.settings import DEFAULTS, MAX_IMAGES, RUNTIMES, VIEW_CHOICES, ServeSettings

if TYPE_CHECKING:
    from starlette.requests import Request

STATIC = Path(__file__).parent / "static"
SAMPLES_PER_CLASS = 2
DOCS_ASSETS = "/docs-assets"  # where fastapi-offline serves Swagger UI's and ReDoc's files
# Nothing but this server: what a page's scripts may fetch (data: and blob: are made in the page itself).
SAME_ORIGIN_ONLY = ("default-src 'self' data: blob:; script-src 'self' 'unsafe-inline' blob:; "
                    "style-src 'self' 'unsafe-inline'")
MAX_ERRORS = 5  # problems listed in one error reply: the first ones found
MAX_MESSAGE = 300  # characters of one error message (a file name in it may be any length)
# Each error reply's `code`, a word a program (the page, in its own language) can match on beside the English
# `detail`: docs/serving.md lists them. An ImageError brings its own (not_an_image, damaged_image, ...).
HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large", 415: "unsupported_content_type",
              422: "invalid_request"}  # fmt: skip


class Refused(Exception):
    """A request this server refuses: its status, its `code` and its one-line English `detail`."""

    def __init__(self, status: int, code: str, detail: str):
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail


# --- the app ----------------------------------------------------------------------------------


def serving_model(model: Classifier, settings: ServeSettings, data: Dataset | None) -> tuple[Classifier, str]:
    """The model that answers requests, and a note when `auto` could not take ONNX Runtime.

    ONNX Runtime serves only once it has answered the first `verify_images` test images as
    PyTorch does (same class for each, logits within export.TOLERANCE); asked for by name, its
    absence or a failed check is an error; under `auto`, PyTorch serves and the note says why.
    `onnxruntime-int8` serves an int8 model, calibrated on `data`'s first training images, once its
    accuracy on the first `int8_check_images` test images is within export.INT8_MAX_DROP of fp32's.
    """
    if settings.runtime not in RUNTIMES:
        raise ServeError(f"unknown runtime {settings.runtime!r}; choose from {', '.join(RUNTIMES)}")
    if settings.runtime == "torch":
        return model, ""
    if data is None or not len(data.test_images):
        if settings.runtime == "auto":
            return model, "serving with PyTorch: no test images to check ONNX Runtime on (name the data with --dataset)"
        raise ServeError(f"--runtime {settings.runtime} serves only once checked on test images: name the model's "
                         "data with --dataset")  # fmt: skip
    images = data.test_images
    if settings.runtime == "onnxruntime-int8":
        if not len(data.train_images):
            raise ServeError("--runtime onnxruntime-int8 is calibrated on training images, which a run does not keep: "
                             "name its data with --dataset")  # fmt: skip
        n = settings.int8_check_images
        try:
            return onnx_int8_runtime(model, images[: settings.verify_images], images[:n], data.test_labels[:n],
                                     data.train_images, settings.runtime_threads), ""  # fmt: skip
        except LenetError as e:
            raise ServeError(f"--runtime onnxruntime-int8: {e}") from None
    try:
        return onnx_runtime(model, images[: settings.verify_images], settings.runtime_threads), ""
    except LenetError as e:
        if settings.runtime == "onnxruntime":
            raise ServeError(f"--runtime onnxruntime: {e}") from None
        return model, f"serving with PyTorch: {e}"


def exported_app(path: Path, settings: ServeSettings):
    """The app of an exported ONNX file served by itself (with its sidecar): ONNX Runtime answers, the views are
    the ones inside the file, and there is no layer view (no network to look into) and no samples."""
    if settings.runtime == "torch" or settings.views != "recorded":
        raise ServeError(f"{path.name} is an exported file: ONNX Runtime serves it with the views inside it "
                         "(--runtime and --views apply to a run's checkpoint)")  # fmt: skip
    try:
        model, entry = exported_runtime(path, settings.runtime_threads)
    except LenetError as e:
        raise ServeError(str(e)) from None
    info = {"name": None, "checkpoint": path.name, "config": model.net.config.to_dict(), "views": model.views.to_dict(),
            "parameters": entry.parameters, "data_set": shown_name(model.data.name), "classes": list(model.data.classes),
            **input_info(model), "test_accuracy": None, "runtime": model.runtime, "lenet_version": __version__}  # fmt: skip
    return create_app(model, info, settings=settings, layers=False)


def with_views(model: Classifier, choice: str) -> Classifier:
    """The model averaging the test-time views `choice` names (VIEW_CHOICES), over the same network."""
    if choice not in VIEW_CHOICES:
        raise ServeError(f"unknown views {choice!r}; choose from {', '.join(VIEW_CHOICES)}")
    if choice == "recorded":
        return model
    views = Views(flip=True) if choice == "mirror" else Views()
    return Classifier(model.net, views, model.data).eval()


def run_info(weights: Path, model: nn.Module) -> dict[str, Any]:
    """What GET /model answers: the model and, when it sits in a run directory, the run's figures (a bare
    checkpoint file has no run files beside it: then none; a damaged one is refused before the server starts)."""
    config, summary = run_records(weights.parent)
    # Nothing that names a path on the server: the checkpoint by its file name, a folder data set by its kind and name.
    return {
        "name": config.recipe.get("model") if config is not None else None,
        "checkpoint": weights.name,
        "config": model.net.config.to_dict(),
        "views": model.views.to_dict(),
        "parameters": count_parameters(model),
        "data_set": shown_name(model.data.name),
        "classes": list(model.data.classes),
        **input_info(model),
        "test_accuracy": summary.test.accuracy if summary is not None else None,
        "runtime": getattr(model, "runtime", f"torch {torch.__version__}"),
    }


def input_info(model: nn.Module) -> dict[str, int]:
    """GET /model's word on the images the model takes: the page draws, and hides the drawing pad, by it."""
    channels, side, _ = input_shape(model)
    return {"channels": channels, "image_size": side}


def pick_samples(images: torch.Tensor, labels: torch.Tensor, per_class: int = SAMPLES_PER_CLASS) -> list[int]:
    """The first `per_class` test images of each class, in class order: the same row every time."""
    return first_per_class(labels, per_class)





def create_app(
    model: nn.Module,
    info: dict[str, Any],
    test_images: torch.Tensor | None = None,
    test_labels: torch.Tensor | None = None,
    settings: ServeSettings = DEFAULTS,
    layers: bool = True,
):
    """The server's FastAPI app: `model` behind the routes in this module's docstring.

    Args:
        model: what answers, usually a `Classifier` (its views and classes are named in the answers).
        info: what GET /model answers (`run_info`'s dictionary).
        test_images, test_labels: the images GET /samples offers; none without them.
        settings: batching, decoding and size limits (settings.py's `ServeSettings`).
        layers: offer POST /layers (an exported file served alone has no network to look into).

    fastapi is imported in the functions that build the app, never at the top of this module:
    serve.py imports without the serve extra, so `lenet serve` can say how to install it.
    """
    from fastapi.staticfiles import StaticFiles
    from fastapi_offline import FastAPIOffline

    channels, side, _ = input_shape(model)
    batcher = MicroBatcher(model, settings.max_batch, settings.max_wait_ms / 1000)
    decoder = Decoder(settings.max_request_pixels, settings.light_pixels, settings.light_bytes, settings.heavy_decodes,
                      settings.heavy_niceness, channels, side)  # fmt: skip

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
                         description=f"LeNet on {info.get('data_set', 'its data set')}: classify {side}x{side} "
                                     f"{'grey' if channels == 1 else 'colour'} images.")  # fmt: skip
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    add_error_replies(app)
    add_page_routes(app)
    schemas = response_models()  # one set for both calls: /docs lists each model once
    add_info_routes(app, schemas, info, batcher, decoder, classes_of(model), test_images, test_labels)
    add_image_routes(app, schemas, model, batcher, decoder, layers)
    return app


def add_error_replies(app) -> None:
    """Errors as JSON `{"detail", "code"}`: 413 for images over the pixel budget, 400 for any other lenet
    error, 422 for an invalid request (its first few problems), and each refusal (`Refused`) its own."""
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException

    def reply(status: int, code: str, detail: Any, headers: dict[str, str] | None = None):
        detail = clip(detail, MAX_MESSAGE) if isinstance(detail, str) else detail
        return JSONResponse({"detail": detail, "code": code}, status_code=status, headers=headers)

    @app.exception_handler(Refused)
    async def refused(_request, e: Refused):
        return reply(e.status, e.code, e.detail)

    @app.exception_handler(PixelBudgetError)
    async def over_budget(_request, e: PixelBudgetError):
        return reply(413, "too_many_pixels", str(e))

    @app.exception_handler(LenetError)
    async def bad_input(_request, e: LenetError):
        return reply(400, getattr(e, "code", "bad_input"), str(e))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request, e: RequestValidationError):
        return reply(422, "invalid_request", brief_errors(e.errors()))

    @app.exception_handler(HTTPException)
    async def http_error(_request, e: HTTPException):  # Starlette's own: an unknown path, a wrong method
        return reply(e.status_code, HTTP_CODES.get(e.status_code, "http_error"), e.detail, e.headers)


def add_page_routes(app) -> None:
    """GET / (the page) and GET /redoc (ReDoc, kept to this server)."""
    from fastapi.openapi.docs import get_redoc_html
    from fastapi.responses import FileResponse, Response

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


def add_info_routes(app, schemas: SimpleNamespace, info: dict[str, Any], batcher: MicroBatcher, decoder: Decoder,
                    classes: Sequence[str], test_images: torch.Tensor | None,
                    test_labels: torch.Tensor | None) -> None:  # fmt: skip
    """GET /healthz, /model, /samples and /samples/{index}.png."""
    from fastapi.responses import Response

    samples = pick_samples(test_images, test_labels) if test_images is not None and test_labels is not None else []

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
             responses={200: {"content": {"image/png": {}}, "description": "the test image, as the model takes it"},
                        404: {"model": schemas.Error, "description": "no test image of that index"}})  # fmt: skip
    async def sample_png(index: int) -> Response:
        if test_images is None or not 0 <= index < len(test_images):
            raise Refused(404, "no_such_sample", f"no test image {index}")
        return Response(_png(test_images[index]), media_type="image/png")


def add_image_routes(app, schemas: SimpleNamespace, model: nn.Module, batcher: MicroBatcher, decoder: Decoder,
                     layers: bool = True) -> None:  # fmt: skip
    """POST /predict and POST /layers, which take images as multipart files or as JSON pixels."""
    from fastapi import Query, Request
    from fastapi.responses import JSONResponse, Response

    channels, side, _ = input_shape(model)
    PixelImages = json_body_model(channels, side)
    classes = classes_of(model)
    views_served = model.views.describe() if isinstance(model, Classifier) else "the image alone"

    @app.post("/predict", openapi_extra=body_openapi(PixelImages), response_model=None,
              responses=image_responses(schemas, schemas.Predictions, "each image's most probable classes, in the order sent"))  # fmt: skip
    async def predict_endpoint(
        request: Request,
        top_k: Annotated[int, Query(ge=1, le=len(classes), description="classes per image, as `lenet predict --top-k`")] = DEFAULT_TOP_K,
        pixels: Annotated[bool, Query(description="also return the input the model saw, in the JSON body's shape")] = False,
    ) -> Response:
        """Classify images: multipart image files (any PNG/JPEG, prepared as `lenet predict` does) or
        JSON `{"images": [...]}` of pixel arrays in the model's shape (S rows of S values, or of [r, g, b] for a
        colour model; GET /model names channels and image_size). Answers in the order sent, with the keys of
        `lenet predict --json`."""
        names, images = await images_from_body(request, decoder, PixelImages)
        predictions = await batcher(images)
        shown = made(images) if pixels else None  # made by now: a Later hands back what its passes made
        results = []
        for i, (name, p) in enumerate(zip(names, predictions)):
            result = prediction_record(name, Prediction(p.top[:top_k]))
            if shown is not None:
                result["pixels"] = pixels_json(shown[i])
            results.append(result)
        # Straight to JSON, the same bytes: FastAPI's encoder would first walk every answer once more.
        return JSONResponse({"predictions": results, "views": views_served})

    if not layers:
        return

    @app.post("/layers", openapi_extra=body_openapi(PixelImages, one=True), response_model=None,
              responses=image_responses(schemas, schemas.Layers, "what each layer of one pass of the network sees"))  # fmt: skip
    async def layers_endpoint(request: Request) -> Response:
        """What each layer sees, for one image (a multipart file or JSON `{"images": [one]}`), from one
        pass of the trained network over the image as shown (no test-time views): the first and the
        second convolution's feature maps after their activation (the channels the run's report draws),
        the fully connected layers' activations, the logits and the class probabilities, as arrays."""
        names, images = await images_from_body(request, decoder, PixelImages)
        if len(names) != 1:
            raise Refused(400, "one_image_only", f"/layers looks at one image at a time; got {len(names)}")

        def look() -> tuple[torch.Tensor, LayerActivations]:  # on the forward thread: a Later's image is made there
            one = made(images)
            return one[0], layer_activations(getattr(model, "net", model), one)

        (name,), (image, seen) = names, await batcher.on_forward_thread(look)
        # Straight to JSON: FastAPI's encoder would walk the ~20,000 numbers once more first.
        return JSONResponse(layers_record(name, image, seen, classes))


# --- a request's images -----------------------------------------------------------------------


Images = torch.Tensor | Later  # a request's images, uint8 [n, C, S, S], or to be made on the forward thread


async def images_from_body(request: "Request", decoder: Decoder, PixelImages) -> tuple[list[str], Images]:
    """A request's images and their names, from a multipart form or a JSON body (`PixelImages`)."""

    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        names, images = await images_from_form(request, decoder)
    elif content_type.startswith("application/json"):
        names, images = await images_from_json(request, decoder, PixelImages)
    else:
        raise Refused(415, "unsupported_content_type", "send multipart/form-data image files or an application/json body")
    if len(names) > MAX_IMAGES:
        raise Refused(400, "too_many_images", f"{len(names)} images in one request; at most {MAX_IMAGES}")
    return names, images


async def images_from_form(request: "Request", decoder: Decoder) -> tuple[list[str], Images]:
    """Multipart image files, named by their file names, decoded off the event loop (decoding.Decoder)."""
    from starlette.datastructures import UploadFile

    from starlette.exceptions import HTTPException

    try:
        form = await request.form(max_files=MAX_IMAGES, max_fields=MAX_IMAGES)
    except HTTPException as e:  # Starlette's parser: too many files or fields, or a malformed form
        if "Too many" in str(e.detail):
            raise Refused(400, "too_many_images", f"over {MAX_IMAGES} files or fields in one request; at most {MAX_IMAGES}") from None
        raise Refused(e.status_code, "bad_form", f"a multipart form that cannot be read: {e.detail}") from None
    uploads = [v for _, v in form.multi_items() if isinstance(v, UploadFile)]
    if not uploads:
        raise Refused(400, "no_image_files", "no image files in the form: send them as multipart fields named 'files'")
    blobs = [(clip(u.filename or f"upload {i}", 100), await u.read()) for i, u in enumerate(uploads)]
    return [name for name, _ in blobs], await decoder(blobs)


async def images_from_json(request: "Request", decoder: Decoder, PixelImages) -> tuple[list[str], Images]:
    """JSON `{"images": [...]}` of pixel arrays, named images[i], converted to the model's channels and side
    (the decoder's): on the forward thread just before their pass, or in the heavy lane for a body of more
    than the decoder's `light_bytes` (a big body's conversion would hold up every request's pass)."""
    channels, side = decoder.channels, decoder.side
    from fastapi.exceptions import RequestValidationError
    from pydantic import ValidationError

    raw = await request.body()
    try:
        body = PixelImages.model_validate_json(raw)
    except ValidationError as e:
        errors = e.errors(include_url=False, include_input=False)[:MAX_ERRORS]
        raise RequestValidationError([shape_named(error, channels, side) for error in errors]) from None

    def convert() -> torch.Tensor:
        try:
            return torch.stack([from_pixels(pixels_to_uint8(img, f"images[{i}]"), channels, side)
                                for i, img in enumerate(body.images)])  # fmt: skip
        except ValueError as e:
            raise Refused(422, "bad_pixels", str(e)) from None

    names = [f"images[{i}]" for i in range(len(body.images))]
    return names, await decoder.placed(len(names), len(raw), convert)


def shape_named(error: dict[str, Any], channels: int, side: int) -> dict[str, Any]:
    """A validation problem placed in the body; one inside an image that is a wrong shape (a row too short, a
    number where [r, g, b] belongs) also says, on its one line, the shape the model takes."""
    named = {**error, "loc": ("body", *error["loc"])}
    if error.get("type") in SHAPE_PROBLEMS and len(error["loc"]) >= 2:  # ("images", i, ...): an image or inside one
        named["msg"] = f"{error['msg']}. {image_words(channels, side)}"
    return named


def layers_record(name: str, image: torch.Tensor, seen: LayerActivations, classes: Sequence[str]) -> dict[str, Any]:
    """POST /layers's answer for one image: every array as nested lists, rounded."""
    probabilities = seen.logits[0].double().softmax(0)
    return {
        "name": name,
        "pixels": pixels_json(image),
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


def brief_errors(errors: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The first few validation problems, each its place, message and kind: never the input echoed back."""
    return [{"loc": list(e.get("loc", ()))[:8], "msg": clip(str(e.get("msg", "")), MAX_MESSAGE), "type": e.get("type")}
            for e in errors[:MAX_ERRORS]]  # fmt: skip


def _png(image: torch.Tensor) -> bytes:
    """A model's input, uint8 [C, S, S], as a grey or an RGB PNG."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image[0].numpy() if len(image) == 1 else image.permute(1, 2, 0).numpy()).save(buffer, format="PNG")
    return buffer.getvalue()


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
            return await JSONResponse({"detail": detail, "code": "body_too_large"}, status_code=413)(scope, receive, send)
        received = 0

        async def counted_receive():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                # Raised inside the endpoint's read, so the app's handler answers it like any refusal.
                raise Refused(413, "body_too_large", f"request body is over the limit of {self.max_bytes:,} bytes")
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
    import uvicorn  # the serve extra's, which require_serve_extra has just checked

    # LeNet's passes are tiny: PyTorch's intra-op threads only spin against the event loop on a small machine.
    torch.set_num_threads(1)
    sys.setswitchinterval(settings.switch_interval_ms / 1000)  # the process is the server's alone
    quiet_pillow_warnings()  # once, here on the main thread: the decoding threads never touch the filters
    if Path(run_or_checkpoint).suffix.lower() == ".onnx":  # an exported file, deployed without its checkpoint
        weights, app = Path(run_or_checkpoint), exported_app(Path(run_or_checkpoint), settings)
        info = {"name": None}
    else:
        weights = resolve_weights(run_or_checkpoint)
        model = with_views(load(weights, resolve_device(device)), settings.views)
        # The test images it checks ONNX Runtime on and shows at /samples (and the training images an int8
        # model is calibrated on): a user's own data only when named (--dataset), else those kept with the run.
        data = checking_data(model, weights.parent, dataset, data_dir, own=True)  # None: upload and drawing only
        model, note = serving_model(model, settings, data)
        if note:
            print(note, file=sys.stderr, flush=True)
        info = {**run_info(weights, model), "lenet_version": __version__}
        app = create_app(model, info, *((data.test_images, data.test_labels) if data is not None else ()),
                         settings=settings)  # fmt: skip
    sock = bind(host, port)
    if warning := exposure_warning(sock):
        print(warning, file=sys.stderr, flush=True)
    bound_host, bound_port = sock.getsockname()[:2]
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    print(f"serving {info['name'] or 'model'} from {weights} at http://{shown}:{bound_port}/ "
          f"(API docs at /docs); Ctrl-C stops", flush=True)  # fmt: skip
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    with registered():  # a training started while the server is busy answering takes its share of the cores
        server.run(sockets=[sock])
    return 0
