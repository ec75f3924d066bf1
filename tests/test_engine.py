"""The engine's fast paths: each one falls back cleanly and keeps the maths."""

import contextlib
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

import lenet
from lenet import create_model, get_recipe
from lenet.training.engine import Engine, forward_fn, keep_freed_memory, make_optimizer, prepare, training_order
from lenet.core.errors import LenetError


def test_fused_optimizer_falls_back_where_unsupported():
    calls = []

    def factory(params, **kw):
        calls.append(kw)
        if kw.get("fused"):
            raise RuntimeError("`fused=True` requires all the params to be floating point Tensors of supported devices")
        return torch.optim.Adam(params, **kw)

    optimizer = make_optimizer(factory, create_model("lenet").parameters(), Engine(fused=True), lr=0.01)
    assert isinstance(optimizer, torch.optim.Adam) and calls == [{"fused": True, "lr": 0.01}, {"lr": 0.01}]
    assert len(optimizer.param_groups[0]["params"]) == 10  # the parameters survived the first attempt
    assert make_optimizer(torch.optim.Adam, create_model("lenet").parameters(), Engine(fused=False)).defaults["fused"] is None


def test_channels_last_keeps_the_outputs():
    torch.manual_seed(0)
    plain = create_model("lenet_32x48").eval()
    fast = prepare(create_model("lenet_32x48").eval(), Engine(channels_last=True))
    fast.load_state_dict(plain.state_dict())
    assert fast.conv[0].weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.rand(16, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(fast(x), plain(x), atol=1e-5)


def test_bf16_forward_gives_float32_logits_close_to_fp32():
    torch.manual_seed(0)
    model = create_model("lenet_bn").eval()
    x = torch.rand(8, 1, 28, 28)
    with torch.no_grad():
        low, full = forward_fn(model, Engine(), "bf16")(x), forward_fn(model, Engine())(x)
    assert low.dtype == torch.float32 and not torch.equal(low, full)
    assert torch.allclose(low, full, atol=0.1)


def test_auto_precision_is_bf16_only_where_the_cpu_has_bf16_units_and_the_run_records_it(monkeypatch, fmnist, tmp_path):
    import json
    from lenet import TrainConfig, get_recipe, train
    from lenet.training.engine import resolve_precision
    from lenet.training.resume import resume_config

    cpu = torch.device("cpu")
    for amx, avx512_bf16, expected in [(True, False, "bf16"), (False, True, "bf16"), (False, False, "fp32")]:
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda amx=amx: amx)
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda v=avx512_bf16: v)
        assert resolve_precision("auto", cpu) == expected
    assert resolve_precision("bf16", cpu) == "bf16"  # asked for: never changed
    with pytest.raises(ValueError, match="resolve_precision"):
        forward_fn(create_model("lenet"), Engine(), "auto")

    recipe = replace(get_recipe("seed"), model="lenet_bn", epochs=1, precision="auto")
    config = TrainConfig(recipe=recipe, device="cpu", out=str(tmp_path), name="r", progress=False,
                         engine=Engine(threads=1))  # fmt: skip
    train(config, data=fmnist.subset(500, 100))  # the CPU now looks like one without bf16 units
    saved = json.loads((tmp_path / "r" / "config.json").read_text())
    assert saved["recipe"]["precision"] == "fp32" and "precision" not in saved["engine"]

    # A run saved when precision was an engine setting resumes in the precision it trained in.
    saved["engine"]["precision"] = "bf16"
    del saved["recipe"]["precision"]
    (tmp_path / "r" / "config.json").write_text(json.dumps(saved))
    resumed = resume_config(tmp_path / "r")
    assert resumed.recipe.precision == "bf16" and resumed.engine == Engine(threads=1)


def _step(model, x, y):
    model.zero_grad()
    logits = model(x)
    torch.nn.functional.cross_entropy(logits, y).backward()
    return logits.detach(), [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("name", ["lenet", "lenet_32x48"])
def test_pool_first_keeps_outputs_and_gradients(name):
    torch.manual_seed(0)
    model = create_model(name).train()
    order = [type(m) for m in model.conv]
    x, y = torch.rand(32, 1, 28, 28), torch.randint(0, 10, (32,))
    logits, grads = _step(model, x, y)
    with training_order(model, Engine(pool_first=True)):
        kinds = [type(m).__name__ for m in model.conv]
        fast_logits, fast_grads = _step(model, x, y)
    assert kinds.index("MaxPool2d") < kinds.index("ReLU" if name != "lenet" else "Sigmoid")  # it did swap
    assert [type(m) for m in model.conv] == order  # and swapped back
    assert torch.allclose(fast_logits, logits, atol=1e-6)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(fast_grads, grads))


def test_pool_first_leaves_other_layers_and_restores_after_an_error():
    # average pool; a non-monotonic activation; pools already straight after the convolutions
    for name, kw in [("lenet5", {}), ("lenet", {"activation": "gelu"}), ("lenet_wide_pn", {})]:
        model = create_model(name, **kw)
        before = [type(m) for m in model.conv]
        with training_order(model, Engine(pool_first=True)):
            assert [type(m) for m in model.conv] == before
    model = create_model("lenet")
    before = [type(m) for m in model.conv]
    with pytest.raises(KeyboardInterrupt), training_order(model, Engine(pool_first=True)):
        raise KeyboardInterrupt
    assert [type(m) for m in model.conv] == before
    with training_order(model, Engine(pool_first=False)):
        assert [type(m) for m in model.conv] == before


def test_bad_precision_and_engine_options():
    with pytest.raises(LenetError, match="precision"):
        replace(get_recipe("default"), precision="fp8")
    with pytest.raises(LenetError, match="threads"):
        Engine(threads=0)


# A "step" that allocates and frees 32 MiB in 4 MiB tensors, as a step's activations do; prints the
# page faults of ten steps after a first one.
STEPS, STEP_PAGES = 40, 8 * 2**20 * 4 // 4096  # each step of _FAULTS allocates and frees 8 x 4 MiB
_FAULTS = f"STEPS = {STEPS}\n" + """
import resource, sys, torch
from lenet.training.engine import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
def step():
    held = [torch.ones(2**20) for _ in range(8)]
    del held
step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(STEPS):
    step()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


GLIBC = sys.platform == "linux" and (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc")


@pytest.mark.skipif(not GLIBC, reason="glibc only")
def test_keep_memory_stops_the_page_faults_of_each_step():
    path = [str(Path(lenet.__file__).parents[1]), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}

    def faults(mode: str) -> int:
        done = subprocess.run([sys.executable, "-c", _FAULTS, mode], env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return int(done.stdout)

    # Over 40 steps, kept: 1,024-4,097 pages here, whatever the step count, less than one step's own 8,192.
    # Plain varies from run to run (16,343 to 326,460 pages: glibc raises its mmap threshold as it goes,
    # sooner or later), so it is only compared, not bounded.
    plain, kept = faults("plain"), faults("keep")
    assert kept < STEP_PAGES < plain


def test_keep_memory_is_glibc_only(monkeypatch):
    monkeypatch.setattr(sys, "platform", "darwin")
    assert keep_freed_memory() is False


def test_keep_memory_is_set_by_the_commands_that_run_the_model_and_by_the_engine(monkeypatch, capsys):
    from lenet import cli
    from lenet.training import engine

    calls = []
    monkeypatch.setattr(engine, "keep_freed_memory", lambda: calls.append("kept") or True)
    assert cli.main(["eval", "no-such-run"]) == 1 and calls == ["kept"]  # set before the command fails
    assert cli.main(["models"]) == 0 and calls == ["kept"]
    prepare(create_model("lenet"), Engine(keep_memory=False))
    assert calls == ["kept"]
    prepare(create_model("lenet"), Engine())
    assert calls == ["kept", "kept"]


def graph_steps(device: str, cuda_graph: bool, precision: str = "fp32", steps: int = 7, force_graph: bool = False,
                on_warning=None):  # fmt: skip
    """The fast recipe's net after `steps` steps of random batches, one of them short like an epoch's last.

    force_graph: take the CUDA graph path whatever the device (with torch.cuda's calls faked, off CUDA)."""
    from lenet.training.engine import Step
    from lenet.training.build import build_optimizer, build_schedule

    recipe, engine = get_recipe("fast"), Engine(cuda_graph=cuda_graph)
    torch.manual_seed(0)
    net = prepare(create_model(recipe.model).to(device), engine)
    optimizer = build_optimizer(net, recipe, engine)
    step = Step(net, optimizer, build_schedule(optimizer, recipe, steps), engine, recipe.label_smoothing, precision,
                on_warning)  # fmt: skip
    step.graphed = step.graphed or force_graph
    batches = torch.Generator().manual_seed(1)
    losses = []
    with training_order(net, engine):
        for i in range(steps):
            n = 40 if i == steps - 2 else 64
            x, y = torch.rand(n, 1, 28, 28, generator=batches), torch.randint(0, 10, (n,), generator=batches)
            losses.append(step(x.to(device), y.to(device))[0].item())
    return net, step, losses


def test_cuda_graph_is_ignored_off_cuda():
    plain, _, plain_losses = graph_steps("cpu", cuda_graph=False)
    graphed, step, losses = graph_steps("cpu", cuda_graph=True)
    assert not step.graphed and step.graph is None and losses == plain_losses
    assert all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(), graphed.state_dict().values()))


def test_a_step_that_cannot_be_captured_trains_on_eagerly(monkeypatch):
    """A capture that fails (an operation this PyTorch or driver cannot capture) leaves the run eager, warned."""

    class Stream:
        def wait_stream(self, other):
            pass

    def refuse(graph):
        raise RuntimeError("operation not permitted when stream is capturing\nCUDA kernel errors ...")

    for name, fake in {"Stream": Stream, "current_stream": Stream, "stream": lambda s: contextlib.nullcontext(),
                       "CUDAGraph": object, "graph": refuse}.items():  # fmt: skip
        monkeypatch.setattr(torch.cuda, name, fake)
    _, _, eager_losses = graph_steps("cpu", cuda_graph=False)
    warnings = []
    _, step, losses = graph_steps("cpu", cuda_graph=True, force_graph=True, on_warning=warnings.append)
    assert not step.graphed and step.graph is None and losses == eager_losses
    assert warnings == ["the step could not be captured as a CUDA graph (operation not permitted when stream is "
                        "capturing); training eagerly"]  # fmt: skip
