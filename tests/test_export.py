"""`lenet export`: ONNX and TorchScript files that reproduce the model, or nothing at all."""

import json
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import LENET
from lenet import load
from lenet.data.registry import DATASETS
from lenet.core.errors import ExportError
from lenet.inference.export import export

CLASSES = DATASETS["fashion-mnist"].classes


def test_onnx_export_is_verified_on_the_test_set_and_documented(small_run):
    import onnx
    import onnxruntime as ort

    result = export(small_run)
    v = result.verification
    assert result.path == small_run / "model.onnx" and result.path.is_file()
    assert v.images == v.argmax_agree == 10_000 and v.max_abs_logit_diff <= 1e-4

    props = {p.key: p.value for p in onnx.load(str(result.path)).metadata_props}
    assert json.loads(props["classes"]) == list(CLASSES)
    assert "/ 255" in props["input"] and "0.286" in props["normalisation"]
    sidecar = json.loads(result.sidecar.read_text())
    assert sidecar["preprocessing"]["input"]["shape"] == ["batch", 1, 28, 28]
    record = json.loads((small_run / "export.json").read_text())["exports"]
    assert record["onnx"]["verification"]["max_abs_logit_diff"] == v.max_abs_logit_diff

    # The batch axis is dynamic: any batch size runs, and agrees with PyTorch.
    session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    x = torch.rand(7, 1, 28, 28)
    with torch.no_grad():
        expected = load(small_run)(x).numpy()
    for n in (1, 7):
        got = session.run(None, {"image": x[:n].numpy()})[0]
        np.testing.assert_allclose(got, expected[:n], atol=1e-4)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit.load is deprecated, still what users call
def test_torchscript_export_to_a_chosen_path(small_run, tmp_path):
    result = export(small_run, "torchscript", tmp_path / "out" / "m.pt")
    assert result.path.is_file() and result.verification.argmax_agree == 10_000
    extra = {"lenet.json": ""}
    module = torch.jit.load(str(result.path), _extra_files=extra)
    assert json.loads(extra["lenet.json"])["preprocessing"]["classes"] == list(CLASSES)
    x = torch.rand(3, 1, 28, 28)
    with torch.no_grad():  # the file holds the run's model, not only one of its shape
        assert torch.allclose(module(x), load(small_run)(x), atol=1e-5)
    assert result.record == result.sidecar and json.loads(result.sidecar.read_text())["format"] == "torchscript"
    # An export elsewhere is recorded beside it; the run's own record keeps only exports into the run.
    run_record = small_run / "export.json"
    assert not run_record.exists() or "torchscript" not in json.loads(run_record.read_text())["exports"]


def test_failing_verification_keeps_no_file(small_run, tmp_path, monkeypatch):
    monkeypatch.setattr("lenet.inference.export.TOLERANCE", -1.0)  # no export can pass
    target = tmp_path / "never.onnx"
    with pytest.raises(ExportError, match="does not reproduce the model.*nothing written"):
        export(small_run, "onnx", target)
    assert list(tmp_path.iterdir()) == []


def test_without_onnx_it_says_how_to_get_it(small_run, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx now raises ImportError
    with pytest.raises(ExportError, match=r"pip install 'lenet\[export\]'"):
        export(small_run, "onnx", tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_cli_prints_the_verification_figure(small_run, tmp_path):
    proc = subprocess.run([*LENET, "export", str(small_run), "--output", str(tmp_path / "m.onnx")],
                          capture_output=True, text=True, timeout=240)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "argmax identical on 10,000/10,000" in proc.stdout and "max |logit difference|" in proc.stdout


@pytest.mark.parametrize("args, fragment", [(["/nonexistent/run"], "no such run"), (["RUN", "--format", "tflite"], "invalid choice")])
def test_cli_errors_are_one_line(small_run, args, fragment):
    args = [str(small_run) if a == "RUN" else a for a in args]
    proc = subprocess.run([*LENET, "export", *args], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and len(proc.stderr.strip().splitlines()) == 1 and fragment in proc.stderr


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_test_time_augmenting_models_export_with_a_dynamic_batch(tmp_path, fmt):
    """The default recipe's model averages each image's shifted views and mirrors in its Classifier."""
    from lenet import create_model, save_model
    from lenet.models.views import Classifier, Views

    torch.manual_seed(0)
    model = Classifier(create_model("lenet_bn"), Views(flip=True, shift=1)).eval()
    with torch.no_grad():  # settle the batch norm statistics away from their initial values
        model.train()(torch.rand(64, 1, 28, 28))
    model.eval()
    save_model(model, tmp_path / "model.safetensors")
    result = export(tmp_path, fmt)
    assert result.verification.passed and result.verification.images == 10_000
    if fmt == "onnx":  # named after what they are, not after the node that averages the views
        import onnx

        (output,) = onnx.load(str(result.path)).graph.output
        dims = [d.dim_param or d.dim_value for d in output.type.tensor_type.shape.dim]
        assert output.name == "logits" and dims == ["batch", 10], dims


def test_an_export_elsewhere_leaves_the_run_alone_and_prints_no_pytorch_warnings(tmp_path):
    import subprocess
    import sys

    from lenet import create_model, save_model
    from lenet.models.views import Classifier, Views

    run = tmp_path / "run"
    save_model(Classifier(create_model("lenet_bn").eval(), Views(flip=True, shift=1)), run / "model.safetensors")
    out = tmp_path / "elsewhere" / "m.onnx"
    proc = subprocess.run([sys.executable, "-m", "lenet.cli", "export", str(run), "--output", str(out)],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    # Off a terminal, the one progress line (verifying takes tens of seconds) and nothing else.
    assert proc.stderr.startswith("verifying with onnxruntime") and proc.stderr.endswith("on 10,000 test images ...\n") and proc.stderr.count("\n") == 1, proc.stderr
    assert "the run directory is left as it was" in proc.stdout
    assert sorted(p.name for p in run.iterdir()) == ["model.safetensors"]
    assert json.loads((tmp_path / "elsewhere" / "m.onnx.json").read_text())["verification"]["images"] == 10_000


@pytest.mark.parametrize("fmt, output, suffix", [("torchscript", "ts.onnx", ".onnx"), ("onnx", "model.pt", ".pt")])
def test_an_output_named_for_the_other_format_is_refused_before_any_work(tmp_path, fmt, output, suffix):
    proc = subprocess.run([*LENET, "export", str(tmp_path / "no-run"), "--format", fmt, "--output", str(tmp_path / output)],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert f"ends in {suffix}" in proc.stderr and f"but --format is {fmt}" in proc.stderr  # before "no such run"
    assert not (tmp_path / output).exists()


# --- int8 -------------------------------------------------------------------------------------


def test_int8_export_is_calibrated_on_training_images_and_recorded_beside_fp32(small_run, fmnist, monkeypatch):
    import onnx

    import lenet.inference.export
    from lenet.inference.quantize import AccuracyCheck

    fp32 = export(small_run)  # model.onnx first: the int8 export must leave it as it is
    fp32_bytes = fp32.path.read_bytes()
    calibrated_on = []
    quantize_int8 = lenet.inference.export.quantize_int8

    def spy(model_bytes, calibration):
        calibrated_on.append(calibration)
        return quantize_int8(model_bytes, calibration)

    monkeypatch.setattr("lenet.inference.export.quantize_int8", spy)
    result = export(small_run, quantize="int8")
    # Calibrated on the first 1,000 training images, never on test images.
    (calibration,) = calibrated_on
    assert torch.equal(calibration, fmnist.train_images[:1000])

    v = result.verification
    assert isinstance(v, AccuracyCheck) and result.path == small_run / "model.int8.onnx"
    assert v.images == 10_000 and v.passed and v.drop <= 0.005 and v.reference.startswith("PyTorch")
    with torch.no_grad():  # the fp32 accuracy is PyTorch's own on the whole test set
        predicted = torch.cat([load(small_run)(fmnist.test_images[i : i + 1000].float() / 255).argmax(1) for i in range(0, 10_000, 1000)])
    assert v.fp32_accuracy == pytest.approx(float((predicted == fmnist.test_labels).float().mean()), abs=1e-4)
    assert fp32.path.read_bytes() == fp32_bytes

    # An int8 graph: quantize/dequantize pairs and int8 weights, with the fp32 model's metadata.
    proto = onnx.load(str(result.path))
    ops = {node.op_type for node in proto.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert any(t.data_type == onnx.TensorProto.INT8 for t in proto.graph.initializer)
    props = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(props["classes"]) == list(CLASSES) and json.loads(props["lenet"])["quantization"]["format"] == "QDQ"

    record = json.loads((small_run / "export.json").read_text())["exports"]
    assert {"onnx", "onnx-int8"} <= set(record) and record["onnx"]["sha256"] == fp32.sha256
    entry = record["onnx-int8"]
    assert entry["path"] == str(result.path) and entry["quantization"]["calibration"]["images"] == 1000
    assert entry["quantization"]["calibration"]["split"] == "train"
    assert entry["verification"]["fp32_accuracy"] == v.fp32_accuracy and entry["verification"]["int8_accuracy"] == v.int8_accuracy
    assert json.loads(result.sidecar.read_text())["verification"]["max_drop"] == 0.005


def test_int8_export_that_loses_too_much_accuracy_writes_nothing(small_run, tmp_path, monkeypatch):
    monkeypatch.setattr("lenet.inference.export.INT8_MAX_DROP", -1.0)  # no int8 model can pass
    target = tmp_path / "never.int8.onnx"
    with pytest.raises(ExportError, match=r"int8 onnx model loses too much accuracy: int8 test accuracy .* against fp32 "
                                          r".* on 10,000 test images.*; nothing written") as caught:  # fmt: skip
        export(small_run, "onnx", target, quantize="int8")
    assert "\n" not in str(caught.value) and list(tmp_path.iterdir()) == []


def test_cli_prints_the_int8_and_fp32_accuracies(small_run, tmp_path):
    out = tmp_path / "m.int8.onnx"
    proc = subprocess.run([*LENET, "export", str(small_run), "--quantize", "int8", "--output", str(out)],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"int8 test accuracy \d+\.\d\d% against fp32 \d+\.\d\d% \(PyTorch .*\) on 10,000 test images, "
                     r"a drop of -?\d+\.\d\d points \(allowed 0\.50\)", proc.stdout), proc.stdout  # fmt: skip
    assert out.is_file() and "the run directory is left as it was" in proc.stdout


def test_quantize_with_torchscript_is_a_one_line_usage_error(small_run, tmp_path):
    proc = subprocess.run([*LENET, "export", str(small_run), "--format", "torchscript", "--quantize", "int8",
                           "--output", str(tmp_path / "m.pt")], capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "--quantize int8 needs --format onnx" in proc.stderr and "Traceback" not in proc.stderr
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ExportError, match="--quantize int8 is for --format onnx"):  # the library says so too
        export(small_run, "torchscript", tmp_path / "m.pt", quantize="int8")
