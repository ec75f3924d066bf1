"""Recipes: every number in the recipe, flags and files made from its fields, saved recipes read back strictly."""

import dataclasses
import subprocess
import sys
import threading

import pytest

from conftest import REPO
from lenet.cli import build_parser
from lenet.core.errors import LenetError
from lenet.models.lenet import create_model
from lenet.training.recipes import Recipe, get_recipe
from lenet.training.runs import check_run_name, create_run_dir, create_unique_run_dir
from lenet.training.loop import build_optimizer, build_schedule, parameter_groups


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
    with pytest.raises(LenetError, match="unknown recipe fields 'lr_peak'"):
        Recipe.from_dict({**saved, "lr_peak": 0.1})
    assert Recipe.from_dict({**saved, "betas": [0.9, 0.999]}) == get_recipe("default")  # JSON and TOML have lists


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
    from lenet.training.loop import build_model

    recipe = get_recipe(name)
    assert count_parameters(build_model(recipe)) <= 100_000 and recipe.epochs <= 15

