"""Recipes: every number in the recipe, flags and files made from its fields, saved recipes read back strictly."""

import dataclasses
import inspect
import subprocess
import sys
import threading

import pytest
import torch

from conftest import REPO
from lenet.cli import build_parser
from lenet.core.errors import LenetError
from lenet.models.lenet import create_model
from lenet.training.recipes import RECIPES, Recipe, get_recipe, recipe_from_mapping
from lenet.runs.directory import check_run_name, create_run_dir, create_unique_run_dir
from lenet.training.build import build_model, build_optimizer, build_schedule, parameter_groups


def test_every_recipe_field_is_a_train_flag_with_help_and_default():
    train = build_parser()._subparsers._group_actions[0].choices["train"]
    actions = {a.dest: a for a in train._actions}
    for f in dataclasses.fields(Recipe):
        assert f.name in actions, f.name
        assert f.metadata["help"] in actions[f.name].help and "(default: " in actions[f.name].help


def test_flags_parse_into_the_recipe_fields(tmp_path):
    args = build_parser().parse_args(["train", "--betas", "0.8", "0.99", "--no-nesterov", "--warmup", "0.3",
                                      "--momentum-range", "0.8", "0.9", "--epochs", "2"])  # fmt: skip
    from lenet.cli import _given

    recipe = dataclasses.replace(get_recipe("default"), **_given(args, Recipe))
    assert recipe.betas == (0.8, 0.99) and recipe.nesterov is False and recipe.warmup == 0.3 and recipe.epochs == 2
    assert recipe.momentum_range == (0.8, 0.9)


def test_onecycle_runs_on_the_recipes_numbers_not_pytorchs_hidden_ones():
    net = create_model("lenet_bn")
    recipe = dataclasses.replace(get_recipe("default"), onecycle_start_div=10.0, momentum_range=(0.8, 0.9))
    optimizer = build_optimizer(net, recipe)
    build_schedule(optimizer, recipe, 100)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(recipe.lr / 10)
    assert optimizer.param_groups[0]["betas"][0] == pytest.approx(0.9)  # the momentum starts high
    plain = dataclasses.replace(recipe, cycle_momentum=False, betas=(0.7, 0.99))
    optimizer = build_optimizer(net, plain)
    build_schedule(optimizer, plain, 100)
    assert optimizer.param_groups[0]["betas"] == (0.7, 0.99)


def test_sgd_takes_nesterov_from_the_recipe():
    recipe = dataclasses.replace(get_recipe("default"), optimizer="sgd", nesterov=False, momentum=0.5)
    group = build_optimizer(create_model("lenet"), recipe).param_groups[0]
    assert group["nesterov"] is False and group["momentum"] == 0.5


def test_norms_and_biases_can_be_left_undecayed():
    net = create_model("lenet_bn")
    decayed = parameter_groups(net, get_recipe("default"))
    assert len(decayed) == 1 and decayed[0]["weight_decay"] == 0.01
    apart = parameter_groups(net, dataclasses.replace(get_recipe("default"), decay_norm_and_bias=False))
    assert [g["weight_decay"] for g in apart] == [0.01, 0.0]
    assert all(p.dim() > 1 for p in apart[0]["params"]) and all(p.dim() == 1 for p in apart[1]["params"])
    assert sum(len(g["params"]) for g in apart) == len(list(net.parameters()))


@pytest.mark.parametrize("bad, fragment", [
    ({"lr": float("inf")}, "lr must be finite"),
    ({"lr": 0}, "lr must be > 0"),
    ({"epochs": 1.5}, "epochs must be a whole number"),
    ({"flip": 1}, "flip must be true or false"),
    ({"betas": (0.9,)}, "betas is a pair"),
    ({"momentum_range": (0.95, 0.85)}, "momentum-range is low then high"),
    ({"optimizer": "lion"}, "unknown optimizer 'lion'"),
])  # fmt: skip
def test_bad_recipe_values_are_one_line(bad, fragment):
    with pytest.raises(LenetError, match=fragment):
        dataclasses.replace(get_recipe("default"), **bad)


def test_saved_recipes_refuse_unknown_fields_and_read_pairs_from_lists():
    saved = get_recipe("default").to_dict()
    for read in (lambda d: Recipe.from_dict(d, "config.json"), lambda d: recipe_from_mapping(d, "x.toml")):
        with pytest.raises(LenetError, match="unknown recipe field 'lr_peak'"):
            read({**saved, "lr_peak": 0.1})
        assert read({**saved, "betas": [0.9, 0.999]}) == get_recipe("default")  # JSON and TOML have lists
        with pytest.raises(LenetError, match="lr must be > 0"):
            read({**saved, "lr": -1})


def test_the_one_mapping_path_differs_only_in_what_a_missing_field_means():
    """A recipe file's missing field keeps its base's value; config.json's means what it meant when it was saved."""
    saved = {k: v for k, v in get_recipe("default").to_dict().items() if k not in ("test_shift", "precision")}
    assert recipe_from_mapping(saved, "file") == get_recipe("default")
    old = Recipe.from_dict(saved, "config.json")
    assert (old.test_shift, old.precision) == (0, "fp32")
    assert dataclasses.replace(old, test_shift=1, precision="auto") == get_recipe("default")
    assert recipe_from_mapping({"lr": 1}, "file").lr == 1.0 and isinstance(recipe_from_mapping({"lr": 1}, "f").lr, float)


# PyTorch's own defaults that a recipe now writes out: (field, the PyTorch callable, its parameter).
PYTORCH_DEFAULTS = [
    ("anneal_strategy", torch.optim.lr_scheduler.OneCycleLR, "anneal_strategy"),
    ("three_phase", torch.optim.lr_scheduler.OneCycleLR, "three_phase"),
    ("amsgrad", torch.optim.Adam, "amsgrad"),
    ("amsgrad", torch.optim.AdamW, "amsgrad"),
    ("dampening", torch.optim.SGD, "dampening"),
    ("bn_momentum", torch.nn.BatchNorm2d, "momentum"),
    ("bn_eps", torch.nn.BatchNorm2d, "eps"),
]


@pytest.mark.parametrize("name, pytorch, parameter", PYTORCH_DEFAULTS)
def test_the_new_fields_default_to_pytorchs_own_values(name, pytorch, parameter):
    assert getattr(Recipe(), name) == inspect.signature(pytorch).parameters[parameter].default
    assert all(getattr(recipe, name) == getattr(Recipe(), name) for recipe, _ in RECIPES.values())


def test_the_new_fields_reach_the_optimizer_the_schedule_and_the_layers():
    net = create_model("lenet_bn")
    recipe = dataclasses.replace(get_recipe("default"), amsgrad=True, anneal_strategy="linear", three_phase=True)
    optimizer = build_optimizer(net, recipe)
    schedule = build_schedule(optimizer, recipe, 100)
    assert optimizer.param_groups[0]["amsgrad"] is True and len(schedule._schedule_phases) == 3
    lrs = []
    for _ in range(20):  # the rise: linear steps are equal, cosine ones are not
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    rises = [b - a for a, b in zip(lrs, lrs[1:])]
    assert max(rises) - min(rises) < 1e-12
    sgd = dataclasses.replace(get_recipe("default"), optimizer="sgd", nesterov=False, dampening=0.25)
    assert build_optimizer(net, sgd).param_groups[0]["dampening"] == 0.25
    with pytest.raises(LenetError, match="Nesterov momentum needs dampening 0"):
        dataclasses.replace(sgd, nesterov=True)
    model = build_model(dataclasses.replace(get_recipe("default"), bn_momentum=0.5, bn_eps=1e-3))
    norms = [m for m in model.net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and all((m.momentum, m.eps) == (0.5, 1e-3) for m in norms)


def test_batch_norms_eps_travels_with_the_weights(tmp_path):
    from lenet.runs.checkpoint import load, save_model

    model = build_model(dataclasses.replace(get_recipe("default"), bn_eps=0.25))
    loaded = load(save_model(model, tmp_path / "m.safetensors"))
    assert {m.eps for m in loaded.net.modules() if isinstance(m, torch.nn.BatchNorm2d)} == {0.25}


def test_the_default_initialisation_is_the_layers_own_draw_and_the_others_differ():
    from lenet.models.lenet import LeNet

    from lenet.training.build import recipe_model_config

    recipe = get_recipe("default")
    torch.manual_seed(3)
    own = LeNet(recipe_model_config(recipe)).state_dict()
    torch.manual_seed(3)
    default = build_model(recipe).net.state_dict()
    assert all(torch.equal(own[k], default[k]) for k in own)  # what every run trained with before the field
    for init in ("kaiming", "xavier"):
        torch.manual_seed(3)
        other = build_model(dataclasses.replace(recipe, init=init)).net
        assert not torch.equal(other.conv[0].weight, own["conv.0.weight"]) and not other.fc[-1].bias.any()


def test_the_validation_split_has_its_own_seed(fmnist):
    from lenet.training.loop import Splits

    data = fmnist.subset(1000, 10)
    zero, same, other = Splits.of(data, 100, 0), Splits.of(data, 100), Splits.of(data, 100, 1)
    assert torch.equal(zero.evaluated[1], same.evaluated[1]) and not torch.equal(zero.train[0], other.train[0])


def test_config_files_from_before_the_new_fields_load_with_pytorchs_defaults():
    new = ("anneal_strategy", "three_phase", "amsgrad", "dampening", "bn_momentum", "bn_eps", "init", "val_seed")
    saved = {k: v for k, v in get_recipe("default").to_dict().items() if k not in new}
    assert Recipe.from_dict(saved, "config.json") == get_recipe("default")
    from lenet.models.lenet import LeNetConfig

    config = build_model(get_recipe("default")).net.config.to_dict()
    old = {k: v for k, v in config.items() if k not in ("norm_momentum", "norm_eps")}
    assert LeNetConfig.from_dict(old) == LeNetConfig.from_dict(config)


@pytest.mark.parametrize("name", ["../x", "x/../../y", "", ".", "..", ".hidden", "a/b", "a\\b"])
def test_a_run_name_is_one_plain_path_component(tmp_path, name):
    with pytest.raises(LenetError, match="one plain directory name"):
        create_run_dir(tmp_path / "runs", name)
    with pytest.raises(LenetError):
        check_run_name(name)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    assert sorted(p.name for p in tmp_path.iterdir()) in ([], ["runs"])


def test_a_bad_run_name_from_the_command_line_creates_nothing(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "lenet.cli", "train", "--out", str(tmp_path / "runs"), "--name",
                           "x/../../y", "--epochs", "1"], capture_output=True, text=True, cwd=REPO)  # fmt: skip
    assert proc.returncode == 1 and "one plain directory name" in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_racing_processes_never_share_a_run_directory(tmp_path):
    claimed, errors = [], []

    def claim():
        try:
            claimed.append(create_unique_run_dir(tmp_path, "same-second"))
        except LenetError as e:  # pragma: no cover - would be the bug
            errors.append(e)

    threads = [threading.Thread(target=claim) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(set(claimed)) == 16
    with pytest.raises(LenetError, match="already exists"):
        create_run_dir(tmp_path, "same-second")


def test_a_one_cycle_too_short_to_warm_up_is_one_line():
    """OneCycleLR divides by the warm-up's length: 5 steps at warm-up 0.2 was a ZeroDivisionError."""
    recipe = get_recipe("default")
    optimizer = build_optimizer(create_model("lenet_bn"), recipe)
    with pytest.raises(LenetError, match="onecycle's warm-up is 20% of 5 steps, exactly one step"):
        build_schedule(optimizer, recipe, 5)
    build_schedule(optimizer, recipe, 4)  # under a step or over one, OneCycleLR runs
    build_schedule(optimizer, recipe, 10)


@pytest.mark.parametrize("name", ["default", "fast"])
def test_the_accurate_recipes_stay_within_100k_parameters_and_15_epochs(name):
    from lenet.models.lenet import count_parameters

    recipe = get_recipe(name)
    assert count_parameters(build_model(recipe)) <= 100_000 and recipe.epochs <= 15



def test_the_accurate_recipe_is_the_default_trained_longer_under_100k_parameters():
    from lenet.models.lenet import count_parameters

    accurate, default = get_recipe("accurate"), get_recipe("default")
    assert dataclasses.replace(accurate, epochs=default.epochs) == default and accurate.epochs == 50
    assert count_parameters(build_model(accurate)) <= 100_000
