"""benchmarks/anchors.py, the studies' runner: arms parse into recipes, a teacher that saw the validation
images is refused, and a tiny study prints and writes its table (a check of the script, not a measurement)."""

import argparse
import json

import pytest

from benchmarks.anchors import Arm, check_teacher_split, main, parse_arm
from benchmarks.sections import read_section
from lenet.core.errors import LenetError


def test_an_arm_is_a_recipe_and_its_fields():
    arm = parse_arm("ema=fast,ema_decay=0.999,bn-momentum=0.5,erase_area=[0.1, 0.3],erase_fill=noise,teacher=runs/T")
    assert (arm.name, arm.base) == ("ema", "fast")
    assert arm.fields == {"ema_decay": 0.999, "bn_momentum": 0.5, "erase_area": [0.1, 0.3], "erase_fill": "noise",
                          "teacher": "runs/T"}  # fmt: skip
    recipe = arm.recipe()
    assert recipe.model == "lenet_wide_pn" and recipe.ema_decay == 0.999 and recipe.erase_area == (0.1, 0.3)
    assert recipe.teacher.endswith("/runs/T")
    for bad in ("default", "=default", "x=default,lr"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_arm(bad)
    with pytest.raises(LenetError, match="erase"):
        Arm("x", "default", {"erase": 2.0}).recipe()


def test_a_teacher_that_saw_the_validation_images_is_refused(small_run):
    arm = Arm("distill", "default", {"teacher": str(small_run)})
    held_out = json.loads((small_run / "config.json").read_text())["val_split"]
    check_teacher_split(arm, arm.recipe(), held_out)  # the same split: fine
    with pytest.raises(LenetError, match="it has seen the validation images"):
        check_teacher_split(arm, arm.recipe(), held_out + 1000)


def test_a_tiny_study_prints_and_writes_its_table(fmnist, tmp_path, capsys):
    doc = tmp_path / "BENCHMARKS.md"
    doc.write_text("# Benchmarks\n")
    assert main(["--arm", "plain=default", "--arm", "erase=default,erase=0.5", "--seeds", "2", "--epochs", "1",
                 "--subset", "1000", "--val-split", "200", "--threads", "1", "--write", str(doc),
                 "--json", str(tmp_path / "study.json")]) == 0  # fmt: skip
    section = read_section(doc, "anchors-study")
    assert "not a measurement" in section and "the test set was not used" in section and "PyTorch" in section
    rows = [line for line in section.splitlines() if line.startswith("| plain") or line.startswith("| erase")]
    assert len(rows) == 2 and "| — |" in rows[0] and " points |" in rows[1]
    study = json.loads((tmp_path / "study.json").read_text())
    assert [r["seed"] for r in study["arms"]["erase"]["runs"]] == [100, 101]
    accuracies = {arm: [r["val_accuracy"] for r in study["arms"][arm]["runs"]] for arm in ("plain", "erase")}
    assert accuracies["plain"] != accuracies["erase"]  # the lever moved the figures
    assert "erase seed 101: val" in capsys.readouterr().out


def test_the_study_spaces_parse(tmp_path, monkeypatch):
    from conftest import REPO
    from lenet.sweep.space import configurations, read_space

    spaces = sorted((REPO / "benchmarks" / "spaces").glob("*.toml"))
    assert [p.stem for p in spaces] == ["distill", "ema-bn", "erase"]
    monkeypatch.chdir(tmp_path)
    for path in spaces:
        space = read_space(path)
        assert space.val_split == 10_000 and space.seeds == 4  # the same validation images as benchmarks/anchors.py
        assert len(configurations(space)) >= 4
    distill = read_space(REPO / "benchmarks" / "spaces" / "distill.toml")
    assert distill.base.teacher == str(tmp_path / "runs" / "teacher-48x96")
