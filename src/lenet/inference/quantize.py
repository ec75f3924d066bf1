"""An int8 model: ONNX Runtime's static quantization of the exported graph, judged by its test accuracy.

Static, not dynamic: dynamic quantization stores only MatMul/Gemm weights as int8 and computes each
activation's scale at run time, pass by pass, so a conv net's convolutions (most of LeNet's work)
stay in float and every pass pays for the scales; ONNX Runtime's quantization guide recommends
static quantization for CNNs. Static quantization fixes every activation's range once, from
calibration images, so that Conv and Gemm run on int8 inputs. The calibration images are
training images, never test images: the test set only judges the result.

An int8 model cannot give fp32's logits to 1e-4, so it is judged the way that matters to a user:
its test accuracy beside fp32's, and the drop allowed (export.INT8_MAX_DROP).
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lenet.core.errors import ExportError
from lenet.data.batches import to_float

QUANTIZATIONS = ("none", "int8")
CALIBRATION_IMAGES = 1000  # the first training images of the model's data set
CALIBRATION_BATCH = 100  # images per calibration pass (each one passes through all the model's views)
# Ranges are folded into min/max every few batches, so calibration holds a few batches' activations, not all.
CALIBRATION_BATCHES_HELD = 4


@dataclass(frozen=True)
class AccuracyCheck:
    """An int8 model's test accuracy beside the fp32 model's (`reference`), on the same images."""

    images: int
    fp32_accuracy: float
    int8_accuracy: float
    argmax_agree: int  # images on which int8 and fp32 give the same class
    max_drop: float  # the accuracy the int8 model may lose, as a fraction (0.005: half a point)
    runtime: str
    reference: str  # what gave the fp32 answers

    @property
    def drop(self) -> float:
        return self.fp32_accuracy - self.int8_accuracy

    @property
    def passed(self) -> bool:
        return self.drop <= self.max_drop

    def describe(self) -> str:
        return (f"int8 test accuracy {self.int8_accuracy:.2%} against fp32 {self.fp32_accuracy:.2%} ({self.reference}) "
                f"on {self.images:,} test images, a drop of {self.drop * 100:.2f} points (allowed "
                f"{self.max_drop * 100:.2f}); the same class on {self.argmax_agree:,}/{self.images:,}")  # fmt: skip


def check_accuracy(fp32_logits: torch.Tensor, int8_logits: torch.Tensor, labels: torch.Tensor, max_drop: float,
                   runtime: str, reference: str) -> AccuracyCheck:  # fmt: skip
    """Both models' test accuracies from their logits on the same images, and how often they agree."""
    if int8_logits.shape != fp32_logits.shape:
        raise ExportError(f"the int8 model gives logits of shape {list(int8_logits.shape)}, expected {list(fp32_logits.shape)}")
    fp32, int8, labels = fp32_logits.argmax(1), int8_logits.argmax(1), labels.to(fp32_logits.device)
    n = len(labels)
    return AccuracyCheck(n, float((fp32 == labels).sum()) / n, float((int8 == labels).sum()) / n,
                         int((int8 == fp32).sum()), max_drop, runtime, reference)  # fmt: skip


def calibration_images(train_images: torch.Tensor) -> torch.Tensor:
    """The images the activation ranges are measured on: the first CALIBRATION_IMAGES of the training split."""
    if not len(train_images):
        raise ExportError("int8 quantization calibrates on training images, and this data set has none")
    return train_images[:CALIBRATION_IMAGES]


def quantization_record(calibration: torch.Tensor) -> dict[str, Any]:
    """How the int8 model was made, for its metadata, sidecar and the run's export.json."""
    import onnxruntime

    return {
        "method": "static (onnxruntime.quantization.quantize_static)",
        "format": "QDQ",
        "weights": "int8, one scale per output channel",
        "activations": "uint8, ranges from calibration (MinMax)",
        "calibration": {"split": "train", "images": len(calibration),
                        "which": f"the first {len(calibration):,} training images"},  # fmt: skip
        "onnxruntime_version": onnxruntime.__version__,
    }


def quantize_int8(fp32_model: bytes, calibration: torch.Tensor) -> bytes:
    """The fp32 ONNX model (bytes) statically quantized to int8, its activation ranges measured on
    `calibration` (uint8 [N, C, S, S] training images, the model's shape). Metadata is carried over."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    fp32 = onnx.load_from_string(fp32_model)
    (input_name,) = [i.name for i in fp32.graph.input]

    class Batches(CalibrationDataReader):
        def __init__(self) -> None:
            starts = range(0, len(calibration), CALIBRATION_BATCH)
            self.batches = ({input_name: to_float(calibration[i : i + CALIBRATION_BATCH]).numpy()} for i in starts)

        def get_next(self) -> dict[str, Any] | None:
            return next(self.batches, None)

    with tempfile.TemporaryDirectory(prefix="lenet-int8-") as folder, _quiet_quantizer():
        source, prepared, quantized = (Path(folder) / name for name in ("fp32.onnx", "prepared.onnx", "int8.onnx"))
        source.write_bytes(fp32_model)
        # Shape inference and graph optimisation first, as ONNX Runtime's quantization guide advises.
        quant_pre_process(str(source), str(prepared))
        # uint8 activations and int8 weights: the pair ONNX Runtime advises for x86 CPUs (U8S8).
        quantize_static(str(prepared), str(quantized), Batches(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        extra_options={"CalibMaxIntermediateOutputs": CALIBRATION_BATCHES_HELD})  # fmt: skip
        proto = onnx.load(str(quantized))
    onnx.helper.set_model_props(proto, {p.key: p.value for p in fp32.metadata_props})
    proto.doc_string = fp32.doc_string
    return proto.SerializeToString()


@contextmanager
def _quiet_quantizer() -> Iterator[None]:
    """The quantizer logs advice to the root logger (per-channel axes of batch-norm scales, which it
    leaves in float; pre-processing, which is done): none of it is the user's to act on. A handler of
    our own meanwhile, so that logging.warning() does not give the root logger a stderr handler for good."""
    root, quiet = logging.getLogger(), logging.NullHandler()
    level = root.level
    root.addHandler(quiet)
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)
        root.removeHandler(quiet)
