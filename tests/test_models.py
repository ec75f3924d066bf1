import re

import pytest
import torch
from torch import nn

from lenet.core.errors import LenetError
from lenet.models.lenet import MODELS, LeNet, LeNetConfig, count_parameters, create_model, list_models, summarize


def test_tutorial_lenet_layer_for_layer():
    model = create_model("lenet")
    kinds = [type(m) for m in model.conv] + [type(m) for m in model.fc]
    assert kinds == [nn.Conv2d, nn.Sigmoid, nn.MaxPool2d, nn.Conv2d, nn.Sigmoid, nn.MaxPool2d,
                     nn.Linear, nn.Sigmoid, nn.Linear, nn.Sigmoid, nn.Linear]  # fmt: skip
    assert [(m.in_features, m.out_features) for m in model.fc if isinstance(m, nn.Linear)] == [
        (256, 120), (120, 84), (84, 10)
    ]  # fmt: skip
    assert count_parameters(model) == 44_426


def test_conv_block_output_is_16x4x4_as_the_tutorial_checks():
    torch.manual_seed(0)
    assert create_model("lenet").conv(torch.randn(64, 1, 28, 28)).shape == (64, 16, 4, 4)


@pytest.mark.parametrize(
    "name, params, side", [("lenet", 44_426, 4), ("lenet5", 61_706, 5), ("lenet_relu", 44_426, 4),
                           ("lenet_bn", 61_750, 5), ("lenet_wide", 97_098, 5), ("lenet_wide_pn", 97_098, 5),
                           ("lenet_32x48", 98_986, 5), ("lenet_32x48_pn", 98_986, 5)]
)  # fmt: skip
def test_registry_sizes(name, params, side):
    model = create_model(name)
    assert count_parameters(model) == params <= 100_000
    assert model.config.feature_side == side
    assert model(torch.rand(3, 1, 28, 28)).shape == (3, 10)


def test_variants_come_from_the_same_definition():
    assert all(type(create_model(name)) is LeNet for name in MODELS)
    relu = create_model("lenet", activation="relu", pool="avg")
    assert any(isinstance(m, nn.ReLU) for m in relu.modules()) and not any(isinstance(m, nn.Sigmoid) for m in relu.modules())
    assert any(isinstance(m, nn.AvgPool2d) for m in relu.modules())
    classic = create_model("lenet5")
    assert classic.fc[0].in_features == 16 * 5 * 5


def test_norm_after_pool_normalises_the_pooled_maps():
    """lenet_wide_pn is lenet_wide's layers with each pool moved before its batch norm: same
    parameters, but batch norm sees 14x14 and 5x5 maps instead of 28x28 and 10x10."""
    wide, pooled = create_model("lenet_wide"), create_model("lenet_wide_pn")
    assert [type(m) for m in pooled.conv] == [nn.Conv2d, nn.MaxPool2d, nn.BatchNorm2d, nn.ReLU] * 2
    assert sorted(p.shape for p in pooled.parameters()) == sorted(p.shape for p in wide.parameters())
    seen = {}
    for name, model in (("wide", wide), ("pooled", pooled)):
        hooks = [m.register_forward_hook(lambda m, inp, _out, name=name: seen.setdefault(name, []).append(inp[0].shape[-1]))
                 for m in model.conv if isinstance(m, nn.BatchNorm2d)]  # fmt: skip
        model(torch.rand(2, 1, 28, 28))
        for hook in hooks:
            hook.remove()
    assert seen == {"wide": [28, 10], "pooled": [14, 5]}


def test_normalisation_is_part_of_the_model():
    model = create_model("lenet_bn").eval()
    x = torch.rand(2, 1, 28, 28)
    assert torch.allclose(model.normalize(x), (x - 0.2860) / 0.3530)


@pytest.mark.parametrize("bad", [{"activation": "swish"}, {"pool": "min"}, {"padding": 3}, {"dropout": 1.0},
                                 {"channels": (0, 16)}, {"input_mean": 0.5}])  # fmt: skip
def test_bad_options_are_refused(bad):
    with pytest.raises(LenetError):
        LeNetConfig(**bad)


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"channels": (10**9, 1)}, "channels must be a whole number from 1 to 4096, not 1000000000"),
        ({"channels": (6, 16, 32)}, "channels must be a pair"),
        ({"channels": "ab"}, "channels must be a pair"),
        ({"hidden": (1.5, 84)}, "hidden must be a whole number"),
        ({"hidden": (True, 84)}, "hidden must be a whole number"),
        ({"num_classes": 10**100}, "num_classes must be a whole number from 1 to 1000, not a huge number"),
        ({"padding": True}, "padding must be a whole number from 0 to 2"),
        ({"batch_norm": "yes"}, "batch_norm must be true or false"),
        ({"norm_after_pool": 1}, "norm_after_pool must be true or false"),
        ({"activation": ["relu"]}, "unknown activation"),
        ({"dropout": "0.1"}, "dropout must be in"),
        ({"input_mean": "a", "input_std": 1.0}, "input_mean and input_std"),
        ({"input_mean": 0.0, "input_std": float("nan")}, "input_mean and input_std"),
        ({"channels": (4096, 4096)}, "parameters is over the limit of 50,000,000"),
    ],
)
def test_wrong_types_and_absurd_sizes_are_refused(bad, message):
    """A config read from a file is checked field by field before any model is built."""
    with pytest.raises(LenetError, match=re.escape(message)):
        LeNetConfig.from_dict({**LeNetConfig().to_dict(), **bad})


@pytest.mark.parametrize("name", list(list_models()))
def test_parameter_count_without_building(name):
    model = create_model(name)
    assert model.config.parameter_count == count_parameters(model)


def test_unknown_model_names_the_choices():
    with pytest.raises(LenetError, match="lenet_wide"):
        create_model("resnet")


def test_summary_matches_the_tutorial():
    rows = summarize(create_model("lenet"), batch_size=64)
    shapes = {r.name: r.output_shape for r in rows}
    assert shapes["conv.5"] == (64, 16, 4, 4) and shapes["fc.4"] == (64, 10)
    assert sum(r.parameters for r in rows) == 44_426


def test_config_round_trip():
    config = create_model("lenet_wide").config
    assert LeNetConfig.from_dict(config.to_dict()) == config
    with pytest.raises(LenetError, match="unknown model options"):
        LeNetConfig.from_dict({**config.to_dict(), "heads": 4})
