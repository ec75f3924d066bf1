"""Names a user types (issue 38, item 8): data-set names in any spelling, a path without folder: or csv:,
usage errors exiting 2, near-miss flags, the missing-data error naming the flag to pass, and an exported
model given where a run is wanted."""

from __future__ import annotations

from pathlib import Path

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
    space.write_text('dataset = "svhn"\nseeds = 2\n')
    assert "unknown data set 'svhn'" in usage_error(capsys, ["sweep", str(space), "--out", str(tmp_path / "runs")])
    space.write_text('dataset = "Fashion-MNIST"\nseeds = 2\n')
    from lenet.sweep.space import read_space

    assert read_space(space).dataset == "fashion-mnist"


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["train", "--recipe", "nope"], "neither a recipe"),
        (["train", "--dataset", "nonsense"], "unknown data set 'nonsense'"),
        (["summary", "--model", "resnet"], "invalid choice: 'resnet'"),
        (["summary", "runs/x", "--model", "lenet"], "give a RUN, or --model (with --channels and --size), not both"),
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


# --- lenet runs [DIR] (issue 38, item 9) ---------------------------------------------------------


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory):
    """A directory of runs in every state: finished (on 30 images of a folder: a small test set), interrupted,
    failed, empty, damaged, a --seeds group's run, and a folder that holds no run."""
    import json
    import shutil
    from dataclasses import replace

    from lenet import TrainConfig, get_recipe, train
    from lenet.core.errors import LenetError
    from lenet.runs.sweeps import write_failed

    base = tmp_path_factory.mktemp("listing")
    shapes = make_folder(base / "shapes", {"bars": 15, "blocks": 15})
    out = base / "runs"
    recipe = replace(get_recipe("seed"), epochs=1, batch_size=8)
    config = TrainConfig(recipe=recipe, recipe_name="seed", dataset=f"folder:{shapes}", device="cpu", out=str(out),
                         name="done", progress=False, report=False)  # fmt: skip
    train(config)

    def copy(name: str, started: str, keep: tuple[str, ...]) -> Path:
        run = out / name
        run.mkdir(parents=True)
        for file in keep:
            shutil.copy(out / "done" / file, run / file)
        record = json.loads((run / "config.json").read_text())
        (run / "config.json").write_text(json.dumps({**record, "started": started}))
        return run

    done = json.loads((out / "done" / "config.json").read_text())
    (out / "done" / "config.json").write_text(json.dumps({**done, "started": "2026-01-05T10:00:00+0000"}))
    copy("cut", "2026-01-04T10:00:00+0000", ("config.json", "metrics.csv"))
    write_failed(copy("broke", "2026-01-03T10:00:00+0000", ("config.json",)), LenetError("loss became nan in epoch 1"))
    copy("fresh", "2026-01-06T10:00:00+0000", ("config.json",))
    copy("group/seed-1", "2026-01-02T10:00:00+0000", ("config.json", "metrics.csv", "summary.json"))
    (copy("torn", "2026-01-01T10:00:00+0000", ("config.json",)) / "summary.json").write_text("{")
    (out / "plots").mkdir()
    return out


def test_runs_lists_every_run_newest_first_with_its_state(runs_dir):
    from lenet.runs.listing import list_runs

    listings = list_runs(runs_dir)
    assert [(r.name, r.state) for r in listings] == [
        ("fresh", "empty"), ("done", "finished"), ("cut", "interrupted"), ("broke", "failed"),
        ("group/seed-1", "finished"), ("torn", "damaged")]  # fmt: skip
    done = listings[1]
    assert done.dataset == "folder:shapes" and done.recipe == "seed" and (done.epochs_done, done.epochs_planned) == (1, 1)
    low, high = done.test_interval  # a test set of 6 images: the accuracy is a wide range
    assert done.test_total == 6 and low < done.test_accuracy < high or done.test_accuracy in (0.0, 1.0)
    assert listings[2].epochs_done == 1 and listings[3].reason == "loss became nan in epoch 1"
    assert listings[5].reason.startswith("summary.json") and "\n" not in listings[5].reason


def test_the_runs_command_prints_a_line_a_run_and_json(runs_dir, capsys):
    import json

    assert main(["runs", str(runs_dir)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["run", "data", "set", "recipe", "epochs", "test", "accuracy", "training", "state"]
    done = next(line for line in lines if line.startswith("done "))
    assert "folder:shapes" in done and " 1/1 " in done and "(95% " in done and "of 6)" in done
    assert done.rstrip().endswith("finished") and " s " in done
    assert next(line for line in lines if line.startswith("torn ")).split("  ")[-1].startswith("damaged: summary.json")
    assert next(line for line in lines if line.startswith("broke ")).endswith("failed: loss became nan in epoch 1")
    assert len(lines) == 7 and "Traceback" not in "".join(lines)
    assert main(["runs", str(runs_dir), "--json"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert [r["state"] for r in records] == ["empty", "finished", "interrupted", "failed", "finished", "damaged"]
    assert len(records[1]["test_interval"]) == 2


def test_runs_of_a_missing_directory_is_one_line(tmp_path, capsys):
    assert main(["runs", str(tmp_path / "nowhere")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].endswith("nowhere: no such directory")
    (tmp_path / "empty").mkdir()
    assert main(["runs", str(tmp_path / "empty")]) == 0
    assert capsys.readouterr().out.strip() == f"no runs in {tmp_path / 'empty'}"
