"""The run directory as a format (lenet/runs/): every file read back through its schema, a malformed
field one line naming the file and the field, and the data and teacher of a resume named again.

Each test here failed on ba6e4f4, where each run file was a loose dict read back by hand.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import re
import shutil
from pathlib import Path

import pytest

from conftest import REPO, make_folder
from lenet import TrainConfig, get_recipe, train
from lenet.cli import main
from lenet.core.errors import LenetError, RunError

PACKAGE = REPO / "src" / "lenet"


def one_line_error(capsys, command: str) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"lenet {command}: error: "), err
    return err[0]


@pytest.fixture(scope="module")
def folder_runs(tmp_path_factory):
    """Two short runs on one folder: on all of it, and on its first 12 training and 4 test images."""
    tmp = tmp_path_factory.mktemp("subset")
    root = make_folder(tmp / "shapes", {"bars": 15, "blocks": 15})
    recipe = dataclasses.replace(get_recipe("seed"), model="lenet_bn", epochs=1, batch_size=8)
    config = TrainConfig(recipe=recipe, dataset=f"folder:{root}", device="cpu", out=str(tmp / "runs"), progress=False)
    from lenet.data.load import load_dataset

    data = load_dataset(f"folder:{root}")
    whole = train(dataclasses.replace(config, name="whole"), data=data)
    part = train(dataclasses.replace(config, name="part"), data=data.subset(12, 4))
    return root, whole.run_dir, part.run_dir, data


# --- one schema, one line -----------------------------------------------------------------------


def test_a_list_for_the_recipe_in_config_json_is_one_line_on_resume(small_run, tmp_path, capsys):
    run = shutil.copytree(small_run, tmp_path / "run")
    (run / "summary.json").unlink()  # unfinished: a resume reads config.json to go on
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "recipe": ["x"]}))
    assert main(["train", "--resume", str(run), "--no-progress"]) == 1
    line = one_line_error(capsys, "train")
    assert "config.json: field recipe: input should be a valid dictionary" in line


@pytest.mark.tripwires
@pytest.mark.parametrize("file, change", [("summary.json", {"test": []}), ("summary.json", None),
                                          ("config.json", {"recipe": []})])  # fmt: skip
def test_a_damaged_run_file_stops_serve_at_start_up_with_one_line(small_run, tmp_path, file, change, capsys,
                                                                   monkeypatch):  # fmt: skip
    pytest.importorskip("fastapi")
    import lenet.inference.serve

    def never(*args):
        raise AssertionError("the server got as far as opening its socket")

    monkeypatch.setattr(lenet.inference.serve, "bind", never)
    run = shutil.copytree(small_run, tmp_path / "run")
    saved = json.loads((run / file).read_text())
    (run / file).write_text(json.dumps([] if change is None else {**saved, **change}))
    assert main(["serve", str(run)]) == 1
    assert f"{file}: field" in one_line_error(capsys, "serve")


def test_a_plan_of_before_train_subset_reads_with_none_and_damaged_sweep_records_are_one_line(tmp_path):
    from lenet.runs.sweeps import read_failed, read_sessions, read_trials
    from lenet.sweep.plan import read_plan

    base = get_recipe("default").to_dict()
    space = {"base": base, "base_name": "default", "axes": [{"field": "lr", "kind": "grid", "values": [0.01]}],
             "seeds": 1, "first_seed": 0, "seeds_per_trial": 1, "val_split": 500, "metric": "final",
             "sample_seed": 0, "max_failures": 3, "asha": None}  # fmt: skip
    plan = {"directory": "/elsewhere", "space": space, "configurations": [{"lr": 0.01}], "cpus_per_trial": 1.0,
            "gpus_per_trial": 0.0, "data_dir": "/a/path/never/read"}  # fmt: skip
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    read = read_plan(tmp_path)
    assert read.space["train_subset"] is None and read.space["test_subset"] is None and read.directory == str(tmp_path)
    for name, reader, text in (("sessions.json", read_sessions, '[{"experiment": 3}]'),
                               ("trials.json", read_trials, '{"0": "exploded"}'),
                               ("failed.json", read_failed, '{"error": ["x"]}')):  # fmt: skip
        (tmp_path / name).write_text(text)
        with pytest.raises(RunError, match=rf"{name}: field \S+: "):
            reader(tmp_path)


def test_every_json_and_toml_reader_goes_through_the_schemas():
    """json.load(s) and tomllib live in lenet/runs/ only: every file lenet reads back is read by its schema."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.relative_to(PACKAGE).parts[0] == "runs":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            call = node.func if isinstance(node, ast.Call) else None
            name = ast.unparse(call) if call is not None else ""
            imported = isinstance(node, (ast.Import, ast.ImportFrom)) and "tomllib" in ast.unparse(node)
            if name in ("json.load", "json.loads", "tomllib.load", "tomllib.loads") or imported:
                found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: {name or ast.unparse(node)}")
    assert found == [], "files read outside lenet/runs/:\n" + "\n".join(found)


def test_docs_run_format_is_written_from_the_schemas():
    from lenet.runs.docs import PAGES, page

    for lang, path in PAGES.items():
        assert path.read_text(encoding="utf-8") == page(lang), f"{path} is stale: python -m lenet.runs.docs"


def test_a_file_of_a_newer_format_is_refused_and_an_older_one_upgraded(tmp_path):
    from lenet.runs.exports import EXPORT_RECORD, add_export
    from lenet.runs.record import read_record
    from lenet.runs.summary import SummaryRecord

    (tmp_path / "summary.json").write_text(json.dumps({"format_version": 99}))
    with pytest.raises(RunError, match="written by a newer lenet"):
        read_record(tmp_path / "summary.json", SummaryRecord)
    # export.json of before its format version: a bare mapping of kinds, kept when another export is added.
    entry = {"format": "onnx", "path": "m.onnx", "bytes": 1, "sha256": "0" * 64, "verification": {},
             "lenet_version": "0.1.0", "torch_version": "2", "checkpoint": "w", "model_config": {}, "views": {},
             "parameters": 1, "preprocessing": {}}  # fmt: skip
    (tmp_path / EXPORT_RECORD).write_text(json.dumps({"onnx": entry}))
    from lenet.runs.exports import ExportEntry

    add_export(tmp_path, "torchscript", ExportEntry.model_validate({**entry, "format": "torchscript"}))
    saved = json.loads((tmp_path / EXPORT_RECORD).read_text())
    assert saved["format_version"] == 1 and set(saved["exports"]) == {"onnx", "torchscript"}


# --- data identity ------------------------------------------------------------------------------


def test_a_subset_has_its_own_digest_and_eval_refuses_the_whole_folder_for_it(folder_runs, capsys):
    root, whole, part, data = folder_runs
    small = data.subset(12, 4)
    assert small.spec.sha256 != data.spec.sha256 and len(small.spec.sha256) == 64
    assert data.subset(None, None) is data  # the whole set is itself
    recorded = json.loads((part / "config.json").read_text())["data"]["spec"]["sha256"]
    assert recorded == small.spec.sha256
    assert main(["eval", str(part), "--dataset", f"folder:{root}"]) == 1
    line = one_line_error(capsys, "eval")
    assert small.spec.sha256 in line and data.spec.sha256 in line  # both digests named


def test_compare_refuses_runs_on_a_folder_and_on_part_of_it(folder_runs, tmp_path):
    from lenet.insight.report import compare

    pytest.importorskip("matplotlib")
    _, whole, part, _ = folder_runs
    with pytest.raises(LenetError, match="different data sets or test splits"):
        compare([whole, part], tmp_path / "c.html")


def test_train_refuses_to_resume_on_other_data_in_the_library(folder_runs, tmp_path):
    from lenet.training.resume import resume_config

    root, whole, _, data = folder_runs
    cut = tmp_path / "cut"
    shutil.copytree(whole, cut)
    (cut / "summary.json").unlink()
    other = data.subset(20, 6)
    config = resume_config(cut, progress=False)
    with pytest.raises(LenetError, match=f"not on the data given \\(sha256 {other.spec.sha256}\\)"):
        train(config, data=other, resume=cut)
    with pytest.raises(LenetError, match=re.escape(f"pass --dataset folder:{root.resolve()}, the path it was trained")):
        train(config, resume=cut)  # a user's own data is never read from the path config.json names (only shown)


def test_sweep_resume_takes_its_data_from_the_command_line_and_refuses_other_data(folder_runs, tmp_path):
    from lenet.sweep.driver import _resumed_data
    from lenet.sweep.plan import Plan

    root, _, _, data = folder_runs
    space = {"dataset": f"folder:{root}", "train_subset": None, "test_subset": None, "val_split": 4}
    plan = Plan(str(tmp_path), space, [{}], 1.0, 0.0, data_sha256=data.spec.sha256)
    with pytest.raises(LenetError, match=re.escape(f"add --dataset folder:{root}, the path it began with")):
        _resumed_data(plan, None, None)  # plan.json's path is never read (only shown, as the flag to pass)
    assert _resumed_data(plan, f"folder:{root}", None).spec.sha256 == data.spec.sha256
    other = make_folder(tmp_path / "other", {"bars": 15, "blocks": 16})
    with pytest.raises(LenetError, match=f"sha256 {data.spec.sha256} then"):
        _resumed_data(plan, f"folder:{other}", None)


def test_the_library_resumes_with_the_commands_checks(folder_runs, tmp_path):
    """prepare_resume is what `lenet train --resume` does before it trains, for a notebook or a script too:
    a finished run needs neither data nor teacher; an unfinished one on a folder needs the folder named."""
    from lenet import prepare_resume

    root, whole, _, _ = folder_runs
    finished = prepare_resume(whole)
    assert finished.finished is not None and finished.data is None and finished.report is False
    assert finished.finished.test.total == json.loads((whole / "summary.json").read_text())["test"]["total"]
    cut = shutil.copytree(whole, tmp_path / "cut")
    (cut / "summary.json").unlink()
    with pytest.raises(LenetError, match=re.escape(f"pass --dataset folder:{root.resolve()}, the path")):
        prepare_resume(cut)
    resume = prepare_resume(cut, dataset=f"folder:{root}", progress=False)
    assert resume.finished is None and resume.report is True  # the run's own choice, recorded in config.json
    assert train(resume.config, data=resume.data, resume=resume.run_dir).run_dir == cut
