"""A trained model as a file other runtimes load: ONNX or TorchScript, verified before it is kept.

The exported graph is the whole LeNet, normalisation included, so a caller only has to do
what `lenet predict` does before the model: make the image the model's [C, S, S] input (a 28x28 grey
Fashion-MNIST-like picture, or an RGB one resized and centre-cropped: lenet.data.images.load_image) and
scale its uint8 pixels to [0, 1]. That contract is
written three times, so it cannot get lost: in the file's own metadata (ONNX metadata_props,
TorchScript extra files), in a JSON sidecar beside it, and in the run's export.json.

An export is written only after the bytes about to be written reproduce PyTorch's logits on
all 10,000 test images (identical argmax, max |difference| <= TOLERANCE), and then atomically.
An int8 export (ONNX only; quantize.py) cannot match fp32's logits that closely: it is written only
when its test accuracy is at most INT8_MAX_DROP below PyTorch's on the same 10,000 images.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from lenet.core.version import __version__
from lenet.runs.checkpoint import load, resolve_weights
from lenet.runs.compat import model_and_views
from lenet.runs.exports import ExportEntry, add_export, export_entry, read_sidecar, write_sidecar
from lenet.runs.samples import SAMPLES_FILE, read_samples
from lenet.data.dataset import Dataset
from lenet.data.load import load_model_data, unnamed_data
from lenet.data.batches import to_float
from lenet.data.registry import IMAGE_SIZE, DataSpec, is_user_data, shown_name
from lenet.core.errors import ExportError, LenetError
from lenet.core.files import write_bytes
from lenet.training.metrics import predict_logits
from lenet.models.lenet import LeNet, LeNetConfig, count_parameters
from lenet.core.progress import bar, on_terminal, stage
from lenet.core.text import plural
from lenet.models.views import Classifier, input_shape
from lenet.inference.quantize import (QUANTIZATIONS, AccuracyCheck, calibration_images, check_accuracy,
                                      quantization_record, quantize_int8)  # fmt: skip

FORMATS = {"onnx": "model.onnx", "torchscript": "model.torchscript.pt"}
INT8_FILE = "model.int8.onnx"  # beside model.onnx, never in its place
TOLERANCE = 1e-4  # max |logit difference| allowed between PyTorch and the exported model
INT8_MAX_DROP = 0.005  # test accuracy an int8 model may lose against fp32: half a percentage point, 50 of 10,000 images
OPSET = 17
INPUT, OUTPUT = "image", "logits"
BATCH = 1000  # verification batch; the last one is smaller on purpose when N is not a multiple


@dataclass(frozen=True)
class Verification:
    images: int
    argmax_agree: int
    max_abs_logit_diff: float
    tolerance: float
    runtime: str

    @property
    def passed(self) -> bool:
        return self.argmax_agree == self.images and self.max_abs_logit_diff <= self.tolerance


@dataclass(frozen=True)
class ExportResult:
    format: str
    path: Path
    sidecar: Path
    record: Path
    bytes: int
    sha256: str
    verification: Verification | AccuracyCheck  # an int8 export is judged by its accuracy
    quantization: str = "none"


def preprocessing(model: Classifier) -> dict[str, Any]:
    """What a caller must feed the exported model, in words and numbers."""
    c = model.net.config
    channels, side, _ = input_shape(model)
    return {
        "input": {"name": INPUT, "shape": ["batch", channels, side, side], "dtype": "float32"},
        "output": {"name": OUTPUT, "shape": ["batch", len(model.data.classes)], "dtype": "float32", "meaning": "logits; softmax gives probabilities"},
        "image": _image_text(model.data.name, channels, side),
        "scaling": "uint8 pixel / 255, giving floats in [0, 1]",
        "normalisation": _normalisation_text(c.input_mean, c.input_std),
        "test_time_views": model.views.describe() + ", logits averaged, inside the model",
        "data_set": shown_name(model.data.name),
        "classes": list(model.data.classes),
    }  # fmt: skip


def _image_text(data_set: str, channels: int, side: int) -> str:
    """How a picture becomes the model's input: grey in Fashion-MNIST's form, or colour as torchvision prepares photos."""
    if channels == 1:
        tool = "to_fashion_mnist" if side == IMAGE_SIZE else f"load_image(path, size={side})"
        return (f"grey {side}x{side}, a light object on a dark ground, trimmed and centred as in {shown_name(data_set)} "
                f"(lenet.data.images.{tool} does this to any picture)")  # fmt: skip
    return (f"RGB {side}x{side}, channels first (R, G, B): transparency composited onto white, the shorter side "
            f"resized to {side} (bilinear, antialiased), the centre {side}x{side} cropped, nothing inverted "
            f"(lenet.data.images.load_image(path, channels={channels}, size={side}) does this to any picture)")  # fmt: skip


def _normalisation_text(mean: float | tuple[float, ...] | None, std: float | tuple[float, ...] | None) -> str:
    if mean is None:
        return "none"
    if isinstance(mean, tuple) and len(mean) > 1:
        return f"per channel (R, G, B): (x - mean) / std, mean {list(mean)}, std {list(std)}, inside the model"
    return f"(x - {mean}) / {std}, inside the model"


def export(
    run_or_checkpoint: str | os.PathLike,
    fmt: str = "onnx",
    output: str | os.PathLike | None = None,
    data_dir: str | os.PathLike | None = None,
    progress: bool = False,
    dataset: str | None = None,
    quantize: str = "none",
) -> ExportResult:
    """Export, verify on the test set, then write the file and its sidecar (FILE.json); into the run's
    record (RUN/export.json) only when the file goes into the run directory: an export elsewhere
    (`output`) leaves the run as it was, and its sidecar is its record. With `progress`, a line per
    stage on a terminal. `quantize="int8"` (ONNX only) writes model.int8.onnx, quantized with
    calibration on training images and judged by its test accuracy against PyTorch's."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    if quantize not in QUANTIZATIONS:
        raise ExportError(f"unknown quantization {quantize!r}; choose from {', '.join(QUANTIZATIONS)}")
    if quantize != "none" and fmt != "onnx":
        raise ExportError(f"--quantize {quantize} is for --format onnx (ONNX Runtime's quantization); a {fmt} export is fp32")
    if output is not None:
        check_output_name(Path(output), fmt)
    weights = resolve_weights(run_or_checkpoint)
    model = load(weights)
    run_dir = weights.parent
    path = Path(output) if output is not None else run_dir / (INT8_FILE if quantize == "int8" else FORMATS[fmt])
    info = {
        "lenet_version": __version__,
        "torch_version": torch.__version__,
        "checkpoint": str(weights),
        "model_config": model.net.config.to_dict(),
        "views": model.views.to_dict(),
        "parameters": count_parameters(model),
        "preprocessing": preprocessing(model),
    }
    with stage(f"loading {dataset or shown_name(model.data.name)}", progress):  # a user's own data only when named (--dataset)
        own = checking_data(model, run_dir, dataset, data_dir)
    if own is None:
        raise unnamed_data(model.data, ", and its run keeps no test images to verify the export on")
    calibration = None
    if quantize == "int8":
        _require_onnx()
        if not len(own.train_images):
            raise ExportError("--quantize int8 is calibrated on training images, which a run does not keep: name its "
                              "data with --dataset")  # fmt: skip
        calibration = calibration_images(own.train_images)
        info["quantization"] = quantization_record(calibration)
    data, verification = _exported(model, fmt, info, calibration, own, progress)
    if not verification.passed:
        raise ExportError(_failure(fmt, verification) + "; nothing written")
    write_bytes(path, data)
    digest = hashlib.sha256(data).hexdigest()
    entry = export_entry({"format": fmt, "path": str(path), "bytes": len(data), "sha256": digest,
                          "verification": _verification_record(verification), **info}, str(path))  # fmt: skip
    sidecar = path.with_name(path.name + ".json")
    write_sidecar(sidecar, entry)
    record = sidecar
    if output is None:
        key = fmt if quantize == "none" else f"{fmt}-{quantize}"  # "onnx-int8" beside "onnx"
        record = add_export(run_dir, key, entry)
    return ExportResult(fmt, path, sidecar, record, len(data), digest, verification, quantize)


def _exported(model: Classifier, fmt: str, info: dict[str, Any], calibration: torch.Tensor | None, own: Dataset,
              progress: bool) -> tuple[bytes, Verification | AccuracyCheck]:  # fmt: skip
    """The file's bytes, quantized to int8 when calibration images are given, and their check on all of
    `own`'s test images: PyTorch's logits to TOLERANCE, or, for int8, PyTorch's accuracy to INT8_MAX_DROP."""
    serialise, runner = (_onnx, _onnx_runner) if fmt == "onnx" else (_torchscript, _torchscript_runner)
    with stage(f"exporting to {fmt}", progress):
        data = serialise(model, info)
    if calibration is not None:
        with stage(f"quantizing to int8, calibrated on {len(calibration):,} training images", progress):
            data = quantize_int8(data, calibration)
    images = own.test_images
    kept = " kept with the run" if own.source.endswith(SAMPLES_FILE) else ""
    verifying = f"verifying with {_runtime_name(fmt)} on {len(images):,} test images{kept}"
    if progress and not on_terminal():  # the longest step (tens of seconds): a log or a pipe gets its one line too
        print(f"{verifying} ...", file=sys.stderr, flush=True)
    with stage(verifying, progress):
        if calibration is not None:
            return data, verify_int8(model, runner(data), images, own.test_labels, _runtime_name(fmt), progress)
        return data, verify(model, runner(data), images, runtime=_runtime_name(fmt), progress=progress)


def checking_data(model: Classifier, run_dir: Path, dataset: str | None, data_dir: str | None,
                  own: bool = False) -> Dataset | None:  # fmt: skip
    """The images a deployed model is checked on: the data set named (a user's own only when named,
    --dataset), a registry data set by its name, or else the test images kept with the run (a run is
    deployable without its data; None for a bare checkpoint, or a run of before they were kept). With `own`,
    a registry data set other than the model's is refused (see load_model_data)."""
    if dataset is not None or not is_user_data(model.data.name):
        return load_model_data(model.data, dataset, data_dir, own=own)
    samples = read_samples(run_dir, len(model.data.classes), model.data.image_shape)
    if samples is None:
        return None
    images, labels = samples
    return Dataset(images[:0], labels[:0], images, labels, source=str(run_dir / SAMPLES_FILE), sha256={},
                   spec=model.data)  # fmt: skip


def _failure(fmt: str, verification: Verification | AccuracyCheck) -> str:
    if isinstance(verification, AccuracyCheck):
        return f"the int8 {fmt} model loses too much accuracy: {verification.describe()}"
    return (f"{fmt} export does not reproduce the model: argmax agrees on {verification.argmax_agree}/"
            f"{verification.images} test images, max |logit difference| {verification.max_abs_logit_diff:.3g} "
            f"(allowed {verification.tolerance:g})")  # fmt: skip


def _verification_record(verification: Verification | AccuracyCheck) -> dict[str, Any]:
    if isinstance(verification, AccuracyCheck):
        return {**asdict(verification), "accuracy_drop": round(verification.drop, 6), "passed": verification.passed}
    return asdict(verification)


# What a file's extension says it holds: an --output named for the other format is refused.
SUFFIXES = {"onnx": (".onnx",), "torchscript": (".pt", ".pth", ".ts", ".torchscript")}


def check_output_name(path: Path, fmt: str) -> None:
    """An ExportError when `path`'s extension names another format than `fmt` (TorchScript in ts.onnx)."""
    suffix = path.suffix.lower()
    for other, suffixes in SUFFIXES.items():
        if other != fmt and suffix in suffixes:
            raise ExportError(f"--output {path} ends in {suffix}, which is {other}, but --format is {fmt}: "
                              f"name it {path.with_suffix(SUFFIXES[fmt][0]).name} or give --format {other}")  # fmt: skip


def verify(model: nn.Module, runner: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, runtime: str = "",
           progress: bool = False) -> Verification:  # fmt: skip
    """Compare PyTorch's logits with the exported model's on every image given (uint8 [N, C, S, S])."""
    expected = predict_logits(model, images, BATCH, "PyTorch" if progress else None).float()
    got = run_batches(runner, images, runtime, progress)
    if got.shape != expected.shape:
        raise ExportError(f"exported model gives logits of shape {list(got.shape)}, expected {list(expected.shape)}")
    agree = int((got.argmax(1) == expected.argmax(1)).sum())
    return Verification(len(images), agree, float((got - expected).abs().max()), TOLERANCE, runtime)


def verify_int8(model: nn.Module, runner: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor,
                labels: torch.Tensor, runtime: str = "", progress: bool = False) -> AccuracyCheck:  # fmt: skip
    """The int8 model's test accuracy beside PyTorch's (fp32) on every image given, and the drop allowed."""
    expected = predict_logits(model, images, BATCH, "PyTorch" if progress else None).float()
    got = run_batches(runner, images, runtime, progress)
    return check_accuracy(expected, got, labels, INT8_MAX_DROP, runtime, f"PyTorch {torch.__version__}")


def run_batches(runner: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, label: str = "",
                progress: bool = False) -> torch.Tensor:  # fmt: skip
    """A runner's float logits for uint8 images, BATCH at a time."""
    starts = range(0, len(images), BATCH)
    return torch.cat([runner(to_float(images[i : i + BATCH])) for i in bar(starts, len(starts), label, progress)]).float()


def _example(model: nn.Module) -> torch.Tensor:
    """An input of the model's shape. Batch 2, not 1, so no exporter can specialise the batch axis to a constant."""
    return torch.zeros(2, *input_shape(model))


# --- ONNX -----------------------------------------------------------------------------------


def _require_onnx():
    try:
        import onnx
        import onnxruntime
    except ImportError as e:
        raise ExportError(f"ONNX export needs onnx and onnxruntime ({e.name} is missing): pip install 'lenet[export]'") from None
    return onnx, onnxruntime


def _onnx(model: Classifier, info: dict[str, Any]) -> bytes:
    onnx, _ = _require_onnx()
    proto = onnx.load_from_string(onnx_graph(model))
    pre = info["preprocessing"]
    onnx.helper.set_model_props(proto, {
        "lenet": json.dumps(info),
        "classes": json.dumps(pre["classes"]),
        "input": f"{INPUT}: float32 [{', '.join(map(str, pre['input']['shape']))}]; {pre['scaling']}",
        "normalisation": pre["normalisation"],
    })  # fmt: skip
    proto.doc_string = f"LeNet on {pre['data_set']} (lenet {__version__}); see metadata_props 'lenet' for preprocessing"
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


def onnx_graph(model: Classifier) -> bytes:
    """The model, its views included, as an ONNX graph with a dynamic batch axis (no metadata)."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # The TorchScript-based exporter is deprecated in favour of the dynamo one, but that one
        # needs onnxscript and more; this one is exact for a plain conv net and works offline.
        warnings.simplefilter("ignore", DeprecationWarning)
        # The views' slices are not constant-folded; PyTorch says so, and the export is verified anyway.
        warnings.filterwarnings("ignore", message="Constant folding", category=UserWarning)
        torch.onnx.export(
            model.eval(), (_example(model),), buffer, input_names=[INPUT], output_names=[OUTPUT],
            dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}}, opset_version=OPSET, dynamo=False,
        )  # fmt: skip
    onnx, _ = _require_onnx()
    proto = onnx.load_from_string(buffer.getvalue())
    _name_output_dims(proto, len(model.data.classes))
    return proto.SerializeToString()


def _name_output_dims(proto, classes: int) -> None:
    """The output's axes as what they are: `batch`, then the class count. With test-time views the
    exporter names the second one after the node that makes it (ReduceMeanlogits_dim_1)."""
    (output,) = [o for o in proto.graph.output if o.name == OUTPUT]
    batch, per_class = output.type.tensor_type.shape.dim
    batch.dim_param = "batch"
    per_class.Clear()
    per_class.dim_value = classes


class OnnxRun:
    """Logits from an ONNX Runtime session, tensors in and out."""

    def __init__(self, session):
        self.session = session

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.session.run([OUTPUT], {INPUT: x.cpu().numpy()})[0])


def _onnx_runner(data: bytes, threads: int | None = None, spin: bool = True) -> OnnxRun:
    _, ort = _require_onnx()
    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    if not spin:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return OnnxRun(ort.InferenceSession(data, options, providers=["CPUExecutionProvider"]))


# --- serving through ONNX Runtime -----------------------------------------------------------


class RuntimeClassifier(Classifier):
    """A Classifier whose eval-mode forward runs in ONNX Runtime, on the CPU.

    For the small batches of a server, ONNX Runtime runs the ten views of lenet_32x48 about four
    times faster than PyTorch's eager mode (1 thread, batch 1 and 8, measured here; see BENCHMARKS.md),
    because LeNet's passes are mostly per-call overhead. `onnx_runtime` verifies it first.
    """

    def __init__(self, model: Classifier, run: Callable[[torch.Tensor], torch.Tensor], runtime: str):
        super().__init__(model.net, model.views, model.data)
        self.run, self.runtime = run, runtime

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        return self.net(img) if self.training else self.run(img)


def onnx_runtime(model: Classifier, images: torch.Tensor, threads: int) -> RuntimeClassifier:
    """`model` exported to ONNX in memory and run by ONNX Runtime on `threads` threads, once it has
    given PyTorch's answers on `images` (uint8 [N, C, S, S]); else an ExportError, and nothing changes.

    The threads sleep between passes instead of spinning (ONNX Runtime's default): a server's passes
    come with gaps, and a spinning thread takes the core the event loop needs for the next requests.
    """
    if next(model.parameters()).device.type != "cpu":
        raise ExportError("ONNX Runtime serves from the CPU here; the model is on another device")
    _, ort = _require_onnx()
    runtime = f"onnxruntime {ort.__version__} ({plural(threads, 'thread')})"
    run = _onnx_runner(onnx_graph(model.eval()), threads, spin=False)
    verification = verify(model, run, images, runtime=runtime)
    if not verification.passed:
        raise ExportError(f"ONNX Runtime does not reproduce the model: argmax agrees on {verification.argmax_agree}/"
                          f"{verification.images} test images, max |logit difference| {verification.max_abs_logit_diff:.3g}")  # fmt: skip
    return RuntimeClassifier(model, run, runtime)


def exported_runtime(path: Path, threads: int) -> tuple[RuntimeClassifier, ExportEntry]:
    """An ONNX file `lenet export` wrote, run by ONNX Runtime without PyTorch's checkpoint: its sidecar (FILE.json)
    says what it holds (network, views, classes), and the file must be the one the sidecar describes (its
    SHA-256), which export verified before writing it. Its network here only names shapes: every answer is
    ONNX Runtime's, and there is no layer view."""
    sidecar = path.with_name(path.name + ".json")
    if not sidecar.is_file():
        raise ExportError(f"{path.name} is an exported model, served with the sidecar lenet export wrote beside it "
                          f"({sidecar.name}), which is not there: export it again, or give the run directory it was "
                          "exported from (or its model.safetensors)")  # fmt: skip
    entry = read_sidecar(sidecar)
    if entry.format != "onnx":
        raise ExportError(f"{sidecar}: describes a {entry.format} file; lenet serves exported ONNX files")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ExportError(f"{path}: unreadable ({e.strerror})") from None
    if hashlib.sha256(data).hexdigest() != entry.sha256:
        raise ExportError(f"{path} is not the file {sidecar.name} describes (another SHA-256): export it again")
    classes = entry.preprocessing.get("classes")
    try:
        config, views = model_and_views(entry.net, entry.views)
        spec = exported_spec(config, str(entry.preprocessing.get("data_set", "exported")), classes)
    except LenetError as e:
        raise ExportError(f"{sidecar}: {e}") from None
    if len(spec.classes) != config.num_classes:
        raise ExportError(f"{sidecar}: names {len(spec.classes)} classes for a network of {config.num_classes}")
    _, ort = _require_onnx()
    runtime = f"onnxruntime {ort.__version__} ({plural(threads, 'thread')}), exported file {path.name}"
    shell = Classifier(LeNet(config), views, spec).eval()
    return RuntimeClassifier(shell, _onnx_runner(data, threads, spin=False), runtime), entry


def exported_spec(config: LeNetConfig, data_set: str, classes: Any) -> DataSpec:
    """The data set an exported file's sidecar describes, in the network's shape; its mean and std only name the
    model's input normalisation (a network without one: 0.5, a placeholder nothing reads)."""
    def per_channel(value: float | tuple[float, ...] | None) -> float | tuple[float, ...]:
        values = (0.5,) if value is None else value if isinstance(value, tuple) else (value,)
        values = values * config.in_channels if len(values) == 1 else values  # one number for every channel
        return values[0] if config.in_channels == 1 else tuple(values)

    return DataSpec(data_set, classes, per_channel(config.input_mean), per_channel(config.input_std),
                    image_size=config.image_size, channels=config.in_channels)  # fmt: skip


def onnx_int8_runtime(model: Classifier, verify_images: torch.Tensor, test_images: torch.Tensor, test_labels: torch.Tensor,
                      train_images: torch.Tensor, threads: int) -> RuntimeClassifier:  # fmt: skip
    """`model` quantized to int8 in memory (calibrated on the first training images, as `lenet export
    --quantize int8` does) and run by ONNX Runtime, once its accuracy on `test_images` is at most
    INT8_MAX_DROP below fp32's; else an ExportError. The fp32 answers come from ONNX Runtime's fp32
    model, itself first checked against PyTorch on `verify_images` (onnx_runtime): PyTorch over the
    whole test set would make start-up slower for no more certainty."""
    fp32 = onnx_runtime(model, verify_images, threads)
    _, ort = _require_onnx()
    int8 = _onnx_runner(quantize_int8(onnx_graph(model.eval()), calibration_images(train_images)), threads, spin=False)
    runtime = f"onnxruntime {ort.__version__} int8"
    check = check_accuracy(run_batches(fp32.run, test_images), run_batches(int8, test_images), test_labels,
                           INT8_MAX_DROP, runtime, "onnxruntime fp32")  # fmt: skip
    if not check.passed:
        raise ExportError(f"the int8 model loses too much accuracy: {check.describe()}")
    detail = (f"static QDQ; test accuracy {check.int8_accuracy:.2%} against fp32 {check.fp32_accuracy:.2%} "
              f"on {check.images:,} images")  # fmt: skip
    return RuntimeClassifier(model, int8, f"{runtime} ({plural(threads, 'thread')}; {detail})")


# --- TorchScript ----------------------------------------------------------------------------

TORCHSCRIPT_EXTRA = "lenet.json"  # torch.jit.load(path, _extra_files={"lenet.json": ""}) reads it


def _torchscript(model: Classifier, info: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated, still the format asked for
        traced = torch.jit.trace(model.eval(), _example(model))
        torch.jit.save(traced, buffer, _extra_files={TORCHSCRIPT_EXTRA: json.dumps(info)})
    return buffer.getvalue()


def _torchscript_runner(data: bytes) -> Callable[[torch.Tensor], torch.Tensor]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        module = torch.jit.load(io.BytesIO(data), map_location="cpu").eval()

    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return module(x)

    return run


def _runtime_name(fmt: str) -> str:
    if fmt == "onnx":
        _, ort = _require_onnx()
        return f"onnxruntime {ort.__version__} (CPUExecutionProvider)"
    return f"torch.jit.load (torch {torch.__version__})"
