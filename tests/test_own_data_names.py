"""Names a user types (issue 38, item 8): data-set names in any spelling, a path without folder: or csv:,
usage errors exiting 2, near-miss flags, the missing-data error naming the flag to pass, and an exported
model given where a run is wanted."""

from __future__ import annotations

import pytest

from conftest import make_folder, write_csv
from lenet.cli import main
from lenet.core.errors import DataError, UsageError
from lenet.data.registry import dataset_name


def usage_error(capsys, argv: list[str]) -> str:
    """The one line a usage error prints, having checked that it exits 2 (argparse's or lenet's own)."""
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's errors exit from the parser
        code = e.code
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "Traceback" not in err[0], (code, err)
    return err[0]


@pytest.mark.parametrize("typed", ["Fashion-MNIST", "fashion_mnist", "FASHION-MNIST", "FashionMNIST", "fashion mnist"])
def test_a_registry_name_is_taken_in_any_case_and_spelling(typed):
    assert dataset_name(typed) == "fashion-mnist"
    assert dataset_name("MNIST") == "mnist" and dataset_name("KMNIST") == "kmnist"


def test_every_command_takes_fashion_mnist_as_the_readme_writes_it():
    from lenet.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["train", "--dataset", "Fashion-MNIST"]).dataset == "fashion-mnist"
    assert parser.parse_args(["eval", "x", "--dataset", "Mnist"]).dataset == "mnist"
    assert parser.parse_args(["sweep", "s.toml", "--dataset", "fashion_mnist"]).dataset == "fashion-mnist"


def test_a_path_without_its_kind_says_folder_or_csv(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_folder(tmp_path / "shapes", {"a": 2, "b": 2})
    write_csv(tmp_path / "digits.csv", 4)
    line = usage_error(capsys, ["train", "--dataset", "shapes/"])
    assert "did you mean folder:shapes/?" in line
    assert "did you mean csv:digits.csv?" in usage_error(capsys, ["eval", "x", "--dataset", "digits.csv"])
    assert "did you mean folder:shapes?" in usage_error(capsys, ["sweep", "s.toml", "--dataset", "shapes"])
    with pytest.raises(UsageError, match="did you mean folder:shapes"):
        dataset_name("shapes")  # the library says the same


def test_an_unknown_data_set_is_a_usage_error_in_the_library_and_in_a_space_file(tmp_path, capsys):
    with pytest.raises(DataError, match="did you mean mnist\\?"):  # a DataError still, for those who catch it
        dataset_name("mnst")
    space = tmp_path / "s.toml"
    space.write_text('dataset = "cifar10"\nseeds = 2\n')
    assert "unknown data set 'cifar10'" in usage_error(capsys, ["sweep", str(space), "--out", str(tmp_path / "runs")])
    space.write_text('dataset = "Fashion-MNIST"\nseeds = 2\n')
    from lenet.sweep.space import read_space

    assert read_space(space).dataset == "fashion-mnist"


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["train", "--recipe", "nope"], "neither a recipe"),
        (["train", "--dataset", "nonsense"], "unknown data set 'nonsense'"),
        (["summary", "--model", "resnet"], "invalid choice: 'resnet'"),
        (["summary", "runs/x", "--model", "lenet"], "give a RUN or --model, not both"),
        (["sweep"], "give a SPACE file, or --resume SWEEP"),
        (["train", "--tensorboard", "--seeds", "2"], "--tensorboard logs one run"),
    ],
)
def test_every_usage_error_exits_2(capsys, argv, fragment):
    assert fragment in usage_error(capsys, argv)


def test_a_space_with_an_unknown_base_recipe_exits_2(tmp_path, capsys):
    space = tmp_path / "s.toml"
    space.write_text('base = "fastest"\nseeds = 2\n')
    assert "base 'fastest' is neither a recipe" in usage_error(capsys, ["sweep", str(space)])


@pytest.mark.parametrize(
    "argv, hint",
    [
        (["train", "--batchsize", "32"], "unrecognized arguments: --batchsize 32 (did you mean --batch-size?)"),
        (["train", "--val_split", "10"], "did you mean --val-split?"),
        (["eval", "x", "--jsn"], "did you mean --json?"),
        (["train", "--seeed", "2", "--lrr=3"], "(--seeed: did you mean --seed?; --lrr: did you mean --lr?)"),
    ],
)
def test_a_near_miss_flag_is_answered_with_the_flag_meant(capsys, argv, hint):
    line = usage_error(capsys, argv)
    assert line.startswith(f"lenet {argv[0]}: error: unrecognized arguments") and hint in line, line


def test_a_flag_of_another_command_gets_no_wrong_suggestion(capsys):
    line = usage_error(capsys, ["models", "--frobnicate"])
    assert "unrecognized arguments: --frobnicate" in line and "did you mean" not in line


@pytest.mark.parametrize("name", ["model.onnx", "model.torchscript.pt", "weights.pth"])
@pytest.mark.parametrize("command", [["eval"], ["serve", "--port", "0"], ["predict", "IMAGE"], ["report"], ["export"]])
def test_an_exported_model_given_for_a_run_says_to_give_the_run(tmp_path, capsys, name, command):
    exported = tmp_path / name
    exported.write_bytes(b"\x08\x07\x12\x07pytorch" + bytes(200))  # an ONNX protobuf's first bytes, or any not safetensors
    argv = [command[0], str(exported), *[str(exported) if a == "IMAGE" else a for a in command[1:]]]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{name} is an exported model" in err[0], err
    assert "give the run directory it was exported from (or its model.safetensors)" in err[0]

