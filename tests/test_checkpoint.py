import json
import pickle
import subprocess

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from conftest import LENET
from lenet import create_model, load, save_model
from lenet.core.errors import CheckpointError


def test_round_trip_gives_the_same_outputs(tmp_path):
    torch.manual_seed(0)
    model = create_model("lenet_wide").eval()
    path = save_model(model, tmp_path / "m.safetensors")
    loaded = load(path)
    assert loaded.net.config == model.config and not loaded.training
    x = torch.rand(8, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert torch.equal(load(path).net.conv[0].weight, model.conv[0].weight)  # the file itself, not a run directory


def test_a_run_directory_loads_its_own_weights(tmp_path):
    torch.manual_seed(1)
    model = create_model("lenet_bn").eval()
    save_model(model, tmp_path / "model.safetensors")
    loaded = load(tmp_path)
    saved, read = model.state_dict(), loaded.net.state_dict()
    assert loaded.net.config == model.config and saved.keys() == read.keys()
    assert all(torch.equal(saved[k], read[k]) for k in saved)  # not a fresh model of the same config


def test_missing_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="no such run directory or checkpoint"):
        load(tmp_path / "nope")


def test_truncated_checkpoint(tmp_path):
    path = save_model(create_model("lenet"), tmp_path / "m.safetensors")
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        load(path)


def test_foreign_safetensors_file_is_refused(tmp_path):
    save_file({"w": torch.zeros(3)}, tmp_path / "other.safetensors")
    with pytest.raises(CheckpointError, match="not a lenet checkpoint"):
        load(tmp_path / "other.safetensors")


def test_weights_of_another_model_are_refused(tmp_path):
    """Weights of lenet_wide under the config of the tutorial's lenet."""
    path = save_model(create_model("lenet_wide"), tmp_path / "m.safetensors")
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        metadata, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    metadata["model_config"] = json.dumps(create_model("lenet").config.to_dict())
    save_file(tensors, path, metadata=metadata)
    with pytest.raises(CheckpointError, match="do not fit the model config"):
        load(path)


class Plant:
    """Unpickling this runs code: it writes a marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


def _malicious(kind: str, path, marker) -> None:
    if kind == "raw pickle":
        path.write_bytes(pickle.dumps(Plant(marker)))
    else:  # what torch.save writes: a zip holding the pickle
        torch.save({"state_dict": Plant(marker)}, path)


@pytest.mark.parametrize("kind", ["raw pickle", "torch.save"])
def test_the_planted_payloads_are_live(tmp_path, kind):
    """Control: loading these files the unsafe way does run their code."""
    _malicious(kind, tmp_path / "evil", tmp_path / "ran")
    if kind == "raw pickle":
        pickle.loads((tmp_path / "evil").read_bytes())
    else:
        torch.load(tmp_path / "evil", weights_only=False)
    assert (tmp_path / "ran").read_text() == "pwned"


@pytest.mark.parametrize("kind", ["raw pickle", "torch.save"])
@pytest.mark.parametrize("where", ["run/model.safetensors", "evil.pt"])
def test_a_pickle_is_never_loaded(tmp_path, kind, where):
    """By the library and by `lenet eval`: one line on stderr, and the payload never runs."""
    marker = tmp_path / "pwned"
    path = tmp_path / where
    path.parent.mkdir(exist_ok=True)
    _malicious(kind, path, marker)
    target = path.parent if where.startswith("run/") else path  # a run directory, or the file itself
    # A .pt file is what torch.save and lenet export --format torchscript write: named as such, and never opened
    # past its first bytes (issue 38, item 8)
    said = "not a readable safetensors checkpoint" if where.startswith("run/") else "evil.pt is an exported model"
    with pytest.raises(CheckpointError, match=said):
        load(target)
    proc = subprocess.run([*LENET, "eval", str(target), "--device", "cpu"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and proc.stdout == ""
    assert len(proc.stderr.splitlines()) == 1 and said in proc.stderr
    assert not marker.exists()


def test_the_views_travel_with_the_weights(tmp_path):
    from lenet.models.views import Classifier, Views

    torch.manual_seed(0)
    model = Classifier(create_model("lenet_bn"), Views(flip=True, shift=1)).eval()
    loaded = load(save_model(model, tmp_path / "m.safetensors"))
    assert loaded.views == Views(flip=True, shift=1)
    x = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x)) and not torch.equal(loaded(x), loaded.net(x))


def test_a_checkpoint_from_before_the_views_left_the_model_loads_with_them(tmp_path):
    """Older checkpoints kept the views in the model config as flip_tta and shift_tta."""
    from lenet.models.views import Views

    path = save_model(create_model("lenet_bn"), tmp_path / "m.safetensors")
    with safe_open(str(path), "pt") as f:
        metadata, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    del metadata["views"]
    metadata["model_config"] = json.dumps({**create_model("lenet_bn").config.to_dict(), "flip_tta": True, "shift_tta": 1})
    save_file(tensors, path, metadata=metadata)
    loaded = load(path)
    assert loaded.views == Views(flip=True, shift=1) and loaded.net.config == create_model("lenet_bn").config
