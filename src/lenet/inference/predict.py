"""Top-k classes of images through a trained model, and a CSV of the results."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from lenet.core.errors import LenetError
from lenet.core.files import write_text
from lenet.models.views import classes_of
from lenet.training.metrics import predict_logits


@dataclass(frozen=True)
class Prediction:
    top: list[tuple[str, float]]  # (class name, probability), most probable first

    @property
    def label(self) -> str:
        return self.top[0][0]

    def to_dict(self) -> dict:
        return {"label": self.label, "top": [{"class": c, "probability": round(p, DIGITS)} for c, p in self.top]}


# Probabilities in JSON (`lenet predict --json`, the server): a float32's digits beyond these are noise.
DIGITS = 6
DEFAULT_TOP_K = 3


def prediction_record(name: str, prediction: Prediction) -> dict:
    """One image's answer as `lenet predict --json` and `POST /predict` both give it: the same keys."""
    return {"name": name, **prediction.to_dict()}


def check_top_k(top_k: int, classes: int) -> int:
    """`top_k` if it is 1 to the number of classes, else a LenetError: the CLI and the API share the bound."""
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= classes:
        raise LenetError(f"--top-k must be from 1 to {classes} (the model's classes), not {top_k}")
    return top_k



def predict(model: nn.Module, images: torch.Tensor, top_k: int = DEFAULT_TOP_K) -> list[Prediction]:
    """Top-k classes for uint8 images [N, C, S, S], the model's shape (`views.input_shape`; load_images reads
    files in it)."""
    device = next(model.parameters()).device
    probabilities = predict_logits(model, images.to(device)).float().softmax(dim=1).cpu()
    values, indices = probabilities.topk(min(top_k, probabilities.shape[1]), dim=1)
    classes = classes_of(model)
    return [
        Prediction([(classes[i], p) for i, p in zip(idx.tolist(), val.tolist())])
        for idx, val in zip(indices, values)
    ]



def write_predictions_csv(path: str | os.PathLike, paths: Sequence[str], predictions: Sequence[Prediction]) -> None:
    """One row per image: path, label, probability, then the next classes and their probabilities."""
    k = max((len(p.top) for p in predictions), default=1)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["path", "label", "probability"] + [f"{col}_{i}" for i in range(2, k + 1)
                                                         for col in ("label", "probability")])  # fmt: skip
    for name, prediction in zip(paths, predictions, strict=True):
        writer.writerow([name] + [v for c, p in prediction.top for v in (c, f"{p:.6f}")])
    write_text(path, out.getvalue())
