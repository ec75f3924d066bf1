"""The engine's fast paths: each one falls back cleanly and keeps the maths."""

import pytest
import torch

from lenet import create_model
from lenet.engine import Engine, forward_fn, make_optimizer, prepare
from lenet.errors import LenetError


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
        low, full = forward_fn(model, Engine(precision="bf16"))(x), forward_fn(model, Engine())(x)
    assert low.dtype == torch.float32 and not torch.equal(low, full)
    assert torch.allclose(low, full, atol=0.1)


def test_bad_engine_options():
    with pytest.raises(LenetError, match="precision"):
        Engine(precision="fp8")
    with pytest.raises(LenetError, match="threads"):
        Engine(threads=0)
