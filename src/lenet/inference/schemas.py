"""What the server takes and answers, as pydantic models: the JSON body, the responses, the OpenAPI request body."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Annotated, Any, Union

import torch

from lenet.data.registry import IMAGE_SIZE
from lenet.inference.predict import DIGITS
from lenet.inference.settings import DEFAULTS, MAX_IMAGES

# --- request bodies ---------------------------------------------------------------------------


def json_body_model(channels: int = 1, side: int = IMAGE_SIZE):
    """The JSON body of POST /predict and /layers, `{"images": [...]}`, as a pydantic model: for a grey model,
    S x S pixel rows; for a colour one, S rows of S [r, g, b] pixels (S the model's side)."""

    from pydantic import BaseModel, Field, StrictFloat, StrictInt

    # fail_fast: each list stops at its first bad item, so a body of 50,000 bad pixels costs one
    # error, not 50,000 (which took seconds to list and megabytes to send).
    across = Field(min_length=side, max_length=side, fail_fast=True)
    Value = Union[StrictInt, StrictFloat]
    Pixel = Value if channels == 1 else Annotated[list[Value], Field(min_length=channels, max_length=channels, fail_fast=True)]
    Row = Annotated[list[Pixel], across]
    Image = Annotated[list[Row], across]

    class PixelImages(BaseModel):
        images: Annotated[list[Image], Field(min_length=1, max_length=MAX_IMAGES, fail_fast=True)]

    PixelImages.__doc__ = (f"{image_words(channels, side)} An image of JSON integers is read as 0-255; one with any "
                           "number written with a decimal point or exponent is read as floats in [0, 1].")  # fmt: skip
    return PixelImages


def image_words(channels: int, side: int) -> str:
    """The shape a model's JSON images take, in a sentence (the docs' schema, and a 422 for a wrong shape)."""
    if channels == 1:
        return f"This model takes {side}x{side} grey images: {side} rows of {side} pixels."
    return f"This model takes {side}x{side} colour images: {side} rows of {side} [r, g, b] pixels."


# The validation problems that mean an image of the wrong shape (a row too short, a number where a pixel's
# [r, g, b] belongs): their 422 names the shape the model takes.
SHAPE_PROBLEMS = ("too_short", "too_long", "list_type")


def response_models() -> SimpleNamespace:
    """The answers' shapes, for the OpenAPI schema (/docs); the tests validate real answers against them."""
    from pydantic import BaseModel, ConfigDict, Field

    Pixels = Union[list[list[int]], list[list[list[int]]]]  # grey rows, or rows of [r, g, b]

    class ClassProbability(BaseModel):
        model_config = ConfigDict(populate_by_name=True)
        class_: str = Field(alias="class", description="a class of the model's data set")
        probability: float = Field(ge=0, le=1, description=f"rounded to {DIGITS} decimals")

    class ImagePrediction(BaseModel):
        name: str = Field(description="the file's name, or images[i] for JSON pixels")
        label: str = Field(description="the most probable class")
        top: list[ClassProbability] = Field(description="top_k classes, most probable first")
        pixels: Pixels | None = Field(None, description="with ?pixels=true: the input the model saw, 0-255, "
                                                         "in the JSON body's shape (S rows of S values, or of [r, g, b])")

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
        pixels: Pixels = Field(description="the input the network saw, 0-255, in the JSON body's shape")
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
        code: str = Field(description="why, as a word a program can match on (not_an_image, too_many_pixels, "
                                      "too_many_images, ...: docs/serving.md lists them); `detail` says it in English")

    class ModelInfo(BaseModel):
        model_config = ConfigDict(extra="allow")
        name: str | None = Field(description="the recipe's model, when the checkpoint sits in a run")
        config: dict[str, Any] = Field(description="the network's options")
        views: dict[str, Any] = Field(description="the test-time views averaged by /predict")
        parameters: int
        data_set: str
        classes: list[str]
        channels: int = Field(description="of the model's input: 1 grey, 3 colour (RGB)")
        image_size: int = Field(description="the input's side S: the model takes S x S images")
        test_accuracy: float | None = Field(description="the run's, when it has one")
        runtime: str = Field(description="what runs the model: ONNX Runtime or PyTorch, with versions")

    class Decodes(BaseModel):
        light: int = Field(description="requests of small uploads, decoded on the forward thread before their pass")
        heavy: int = Field(description="requests of large images (or many bytes), decoded in the heavy lane")
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


def image_responses(schemas: SimpleNamespace, ok: type, what: str) -> dict[int | str, dict[str, Any]]:
    """An image endpoint's answers: 200 and every refusal, each with its reason in `detail`."""
    error = schemas.Error
    return {
        200: {"model": ok, "description": what},
        400: {"model": error, "description": "an image that cannot be decoded, no image files in the form, or too many images"},
        413: {"model": error, "description": f"a body over the size limit, or images holding more pixels than the "
                                             f"server's limit per request (--max-request-pixels, default {DEFAULTS.max_request_pixels:,})"},
        415: {"model": error, "description": "a body that is neither multipart/form-data nor application/json"},
        422: {"model": error, "description": "JSON that is not images of the model's shape (GET /model: channels, "
                                             "image_size) with pixels in range, or a bad query parameter"},
    }  # fmt: skip


def pixels_to_uint8(image: list, where: str) -> torch.Tensor:
    """One JSON image, grey [S, S] or colour [S, S, 3], as uint8 of that shape; ints are 0-255, floats are [0, 1]."""
    values = torch.tensor(image, dtype=torch.float64)
    floats = _any_float(image)
    if not values.isfinite().all():  # NaN or infinity: JSON has neither, but Python's parsers take both
        raise ValueError(f"{where}: pixel values must be finite numbers")
    low, high = (0.0, 1.0) if floats else (0, 255)
    if values.min() < low or values.max() > high:
        kind = "float pixels must be in [0, 1]" if floats else "integer pixels must be in 0-255"
        raise ValueError(f"{where}: {kind}, got values from {values.min().item():g} to {values.max().item():g}")
    return (values * 255).round().to(torch.uint8) if floats else values.to(torch.uint8)


def _any_float(values: list) -> bool:
    """Whether any number in nested lists is a float (written with a decimal point or an exponent)."""
    return any(_any_float(v) if isinstance(v, list) else isinstance(v, float) for v in values)


def pixels_json(image: torch.Tensor) -> list:
    """A model's input, uint8 [C, S, S], as the JSON body sends it: S rows of S values (grey) or of [r, g, b]."""
    return image[0].tolist() if len(image) == 1 else image.permute(1, 2, 0).tolist()


def body_openapi(PixelImages, one: bool = False) -> dict[str, Any]:
    """An image endpoint's OpenAPI request body: multipart files or JSON pixels (`one`: a single image).

    One endpoint takes two body types, which FastAPI cannot declare from the signature.
    """
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


