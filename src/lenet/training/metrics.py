"""Loss, accuracy and the confusion matrix, computed over exactly the images given.

The tutorial divides its accuracy by batches * 64 = 10,048 instead of the 10,000 test
images, and its training loss by the batch size a second time; here the loss is a mean
per sample and the accuracy counts every image once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lenet.data.batches import to_float
from lenet.models.lenet import eval_mode
from lenet.core.progress import bar
from lenet.core.stats import is_small, small_test_warning, wilson_interval
from lenet.models.views import classes_of
from lenet.training.recipes import EVAL_CHUNK


@dataclass(frozen=True)
class Evaluation:
    loss: float  # cross-entropy, mean over images
    correct: int
    total: int
    confusion: torch.Tensor  # [true class, predicted class] counts, int64 on the CPU
    classes: tuple[str, ...] = ()  # the names of the classes, where known

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else 0.0

    @property
    def accuracy_interval(self) -> tuple[float, float]:
        """The 95% Wilson score interval of the accuracy (core/stats.py): where it lies, given so few images."""
        return wilson_interval(self.correct, self.total)

    def honest_figures(self) -> dict[str, Any]:
        """The interval, and the warning for a small test set (None for a large one), for `lenet eval --json`."""
        return {"accuracy_interval_95": list(self.accuracy_interval), "small_test_set": is_small(self.total),
                "warning": small_test_warning(self.correct, self.total) or None}  # fmt: skip

    @property
    def per_class_accuracy(self) -> list[float]:
        """Per true class, the share predicted right: the class's recall."""
        per_class = self.confusion.sum(dim=1).clamp(min=1)
        return (self.confusion.diagonal() / per_class).tolist()

    @property
    def per_class_precision(self) -> list[float]:
        """Per predicted class, the share that truly is that class (0 for a class never predicted)."""
        predicted = self.confusion.sum(dim=0).clamp(min=1)
        return (self.confusion.diagonal() / predicted).tolist()

    def to_dict(self) -> dict[str, Any]:
        return {
            "loss": self.loss,
            "accuracy": self.accuracy,
            "correct": self.correct,
            "total": self.total,
            "per_class_accuracy": dict(zip(self._names(), self.per_class_accuracy)),
            "per_class_precision": dict(zip(self._names(), self.per_class_precision)),
            "confusion_matrix": self.confusion.tolist(),
        }

    def _names(self) -> tuple[str, ...]:
        return self.classes or tuple(map(str, range(len(self.confusion))))


def confusion_matrix(targets: torch.Tensor, predictions: torch.Tensor, num_classes: int = 10) -> torch.Tensor:
    flat = targets.long() * num_classes + predictions.long()
    return torch.bincount(flat, minlength=num_classes**2).reshape(num_classes, num_classes)


@torch.inference_mode()
def predict_logits(model: nn.Module, images: torch.Tensor, batch_size: int = EVAL_CHUNK,
                   progress: str | None = None) -> torch.Tensor:  # fmt: skip
    """Logits for uint8 images [N, 1, 28, 28], computed in chunks to keep memory low; with
    `progress`, a bar of that description on a terminal."""
    starts = range(0, len(images), batch_size)
    if progress is not None:
        starts = bar(starts, len(starts), progress, unit="chunk")
    logits = None
    with eval_mode(model):
        for i in starts:
            chunk = model(to_float(images[i : i + batch_size]))
            # One output tensor from the start: a small result kept per chunk pinned glibc's freed
            # blocks, and the resident memory grew by 2 MB a chunk (to 640 MB in some runs, 335 MB now).
            if logits is None:
                logits = chunk.new_empty((len(images), *chunk.shape[1:]))
            logits[i : i + len(chunk)] = chunk
    return logits if logits is not None else torch.empty(0, 0)


def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = EVAL_CHUNK,
             progress: str | None = None) -> Evaluation:  # fmt: skip
    return score(predict_logits(model, images, batch_size, progress), labels, classes_of(model))


def score(logits: torch.Tensor, labels: torch.Tensor, classes: tuple[str, ...] = ()) -> Evaluation:
    """The evaluation of logits already computed (so a caller that needs them runs the model once)."""
    logits = logits.float()
    loss = F.cross_entropy(logits, labels, reduction="sum").item() / max(len(labels), 1)
    predictions = logits.argmax(dim=1)
    confusion = confusion_matrix(labels, predictions, logits.shape[1]).cpu()
    return Evaluation(loss=loss, correct=int(confusion.diagonal().sum()), total=len(labels), confusion=confusion,
                      classes=tuple(classes))  # fmt: skip


def seed_statistics(accuracies: list[float], **extra: Any) -> dict[str, Any]:
    """Mean, sample standard deviation, min and max of per-seed accuracies."""
    t = torch.tensor(accuracies, dtype=torch.float64)
    return {
        "runs": len(accuracies),
        "mean": t.mean().item(),
        "std": t.std().item() if len(accuracies) > 1 else 0.0,
        "min": t.min().item(),
        "max": t.max().item(),
        "accuracies": accuracies,
        **extra,
    }
