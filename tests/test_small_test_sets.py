"""Honest figures for your own, small data: an accuracy's 95% interval and a warning where the test set is
small, and the misclassified test images named by their files (`lenet eval --mistakes`, the report).

Issue 38, items 4 and 5: a folder's 24 test images gave an accuracy that moves 4 points an image, with no
interval and no warning, and nothing said which of the user's files the model got wrong.
"""

import csv
import dataclasses
import json
import math
import shutil

import pytest
import torch
from PIL import Image

from conftest import write_csv
from lenet import TrainConfig, get_recipe, load, train
from lenet.cli import main
from lenet.core.stats import SMALL_TEST_SET, wilson_interval
from lenet.data.load import load_dataset
from lenet.insight.analysis import misclassified
from lenet.training.metrics import predict_logits


def one_line_error(capsys, command: str) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"lenet {command}: error:"), err
    return err[0]


# --- the Wilson score interval ------------------------------------------------------------------


@pytest.mark.parametrize(("correct", "total", "low", "high"), [
    (20, 24, 0.6415, 0.9332),  # the folder of issue 38: 83.3% of 24
    (0, 10, 0.0, 0.2775),  # 0%: the normal approximation gives 0-0, Wilson does not
    (10, 10, 0.7225, 1.0),
    (9000, 10000, 0.8940, 0.9057),  # Fashion-MNIST's test set: about +-0.6 points
    (1, 2, 0.0945, 0.9055),
])  # fmt: skip
def test_wilson_interval_matches_known_values(correct, total, low, high):
    assert wilson_interval(correct, total) == pytest.approx((low, high), abs=1e-4)


@pytest.mark.parametrize(("correct", "total"), [(20, 24), (3, 7), (0, 1), (499, 500), (123, 1000)])
def test_wilson_interval_is_the_range_of_p_where_the_score_test_accepts(correct, total):
    # The interval's ends are the p where |correct/total - p| = z * sqrt(p(1 - p)/total): the quadratic's roots.
    z, n, phat = 1.96, total, correct / total
    a, b, c = 1 + z * z / n, -(2 * phat + z * z / n), phat * phat
    roots = sorted(((-b - math.sqrt(b * b - 4 * a * c)) / (2 * a), (-b + math.sqrt(b * b - 4 * a * c)) / (2 * a)))
    assert wilson_interval(correct, total) == pytest.approx(tuple(roots), abs=1e-12)
    (low99, high99), (low95, high95) = wilson_interval(correct, total, z=2.576), wilson_interval(correct, total)
    assert low99 <= low95 and high99 >= high95 and high99 - low99 > high95 - low95  # 99% is wider


def test_wilson_interval_of_nothing_measured_is_everything():
    assert wilson_interval(0, 0) == (0.0, 1.0)


# --- a run on a small folder: its figures and its mistakes --------------------------------------


def noise_folder(root, per_class: int = 15):
    """A folder data set whose two classes look alike (random grey noise): a model gets some wrong."""
    g = torch.Generator().manual_seed(1)
    for name in ("cats", "dogs"):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = torch.randint(0, 256, (28, 28), generator=g, dtype=torch.uint8)
            Image.fromarray(pixels.numpy()).save(root / name / f"{name[:-1]}{i:02}.png")
    return root


@pytest.fixture(scope="module")
def noise_run(tmp_path_factory):
    """(the run directory, the folder): one epoch on 24 images, tested on 6."""
    tmp = tmp_path_factory.mktemp("small")
    root = noise_folder(tmp / "pets")
    recipe = dataclasses.replace(get_recipe("seed"), model="lenet_bn", epochs=1, batch_size=8)
    result = train(TrainConfig(recipe=recipe, dataset=f"folder:{root}", device="cpu", out=str(tmp / "runs"),
                               name="pets", progress=False))  # fmt: skip
    return result.run_dir, root


def expected_mistakes(run, dataset: str):
    """The misclassified test images as lenet's own pieces find them: (source, truth, prediction)."""
    data = load_dataset(dataset)
    model = load(run)
    predicted = predict_logits(model, data.test_images).argmax(dim=1)
    classes = data.spec.classes
    return data, [(data.test_sources[i], classes[int(data.test_labels[i])], classes[int(predicted[i])])
                  for i in (predicted != data.test_labels).nonzero().flatten().tolist()]  # fmt: skip


def test_eval_of_a_small_test_set_gives_the_interval_and_a_warning(noise_run, capsys):
    run, root = noise_run
    assert main(["eval", str(run), "--dataset", f"folder:{root}"]) == 0
    captured = capsys.readouterr()
    first = captured.out.splitlines()[0]
    correct, total = map(int, first.split("(")[1].split(",")[0].split("/"))
    assert total == 6
    low, high = wilson_interval(correct, total)
    assert f"95% interval {low:.1%}-{high:.1%}" in first
    warnings = captured.err.strip().splitlines()
    assert len(warnings) == 1 and warnings[0].startswith("warning: only 6 test images")
    assert f"{SMALL_TEST_SET:,} or more" in warnings[0]

    assert main(["eval", str(run), "--dataset", f"folder:{root}", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["accuracy_interval_95"] == pytest.approx(list(wilson_interval(record["correct"], 6)))
    assert record["small_test_set"] is True and record["warning"].startswith("only 6 test images")


def test_eval_mistakes_names_the_folders_files(noise_run, tmp_path, capsys):
    run, root = noise_run
    out = tmp_path / "wrong.csv"
    assert main(["eval", str(run), "--dataset", f"folder:{root}", "--mistakes", str(out)]) == 0
    data, expected = expected_mistakes(run, f"folder:{root}")
    assert expected, "the noise run should get some of its test images wrong"
    with open(out, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["path", "truth", "prediction", "confidence"]
    assert [tuple(row[:3]) for row in rows[1:]] == expected
    for path, truth, _, confidence in rows[1:]:
        assert (root / path).is_file() and path.startswith(f"{truth}/")  # relative to the folder, in its class
        assert 0.5 <= float(confidence) <= 1.0  # two classes: the wrong answer won
    assert f"{len(expected)} misclassified test image" in capsys.readouterr().out
    assert len(data.test_sources) == len(data.test_labels) == 6


def test_eval_mistakes_of_a_csv_names_the_file_and_line(tmp_path, capsys):
    path = write_csv(tmp_path / "shapes.csv", 40)
    recipe = dataclasses.replace(get_recipe("seed"), model="lenet_bn", epochs=1, batch_size=8)
    run = train(TrainConfig(recipe=recipe, dataset=f"csv:{path}", device="cpu", out=str(tmp_path / "runs"),
                            name="csv", progress=False)).run_dir  # fmt: skip
    out = tmp_path / "wrong.csv"
    assert main(["eval", str(run), "--dataset", f"csv:{path}", "--mistakes", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["mistakes_csv"] == str(out)
    _, expected = expected_mistakes(run, f"csv:{path}")
    with open(out, newline="") as f:
        rows = list(csv.reader(f))[1:]
    assert expected and [tuple(row[:3]) for row in rows] == expected
    lines = path.read_text().splitlines()
    for source, truth, *_ in rows:
        name, line = source.split(", line ")
        assert name == "shapes.csv" and lines[int(line) - 1].split(",")[0] == truth  # the row it came from


def test_a_data_set_without_files_names_its_mistakes_by_test_index():
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0], [0.0, 3.0]])
    labels = torch.tensor([0, 0, 1])
    (mistake,) = misclassified(logits, labels, (), ("a", "b"))
    assert (mistake.index, mistake.path, mistake.truth, mistake.prediction) == (1, "test image 1", "a", "b")
    assert mistake.confidence == pytest.approx(torch.tensor([0.0, 2.0]).softmax(0)[1].item())


def test_subset_and_to_keep_the_test_images_sources(noise_run):
    data = load_dataset(f"folder:{noise_run[1]}")
    part = data.subset(n_train=5, n_test=4)
    assert part.test_sources == data.test_sources[:4] and len(part.test_sources) == len(part.test_labels)
    assert part.to("cpu").test_sources == part.test_sources
    assert part.test_source(3) == data.test_sources[3]


@pytest.mark.parametrize(("name", "why"), [
    ("wrong.txt", "give a name ending in .csv"),
    ("adir.csv", "a directory"),
    ("afile/x.csv", "is a file, not a directory"),
])  # fmt: skip
def test_a_bad_mistakes_path_is_one_line_before_any_work(noise_run, tmp_path, capsys, name, why):
    (tmp_path / "adir.csv").mkdir()
    (tmp_path / "afile").write_text("")
    run, root = noise_run
    assert main(["eval", str(run), "--dataset", f"folder:{root}", "--mistakes", str(tmp_path / name)]) == 1
    error = one_line_error(capsys, "eval")
    assert why in error and "--mistakes" in error


def test_the_report_gives_the_interval_and_lists_the_misclassified_files(noise_run, tmp_path, capsys):
    run, root = noise_run
    assert main(["report", str(run), "--dataset", f"folder:{root}", "--out", str(tmp_path)]) == 0
    assert capsys.readouterr().err.startswith("warning: only 6 test images")
    page = (tmp_path / "report.html").read_text()
    assert "95% interval" in page and "only 6 test images" in page
    assert 'id="misclassified-files"' in page
    _, expected = expected_mistakes(run, f"folder:{root}")
    for source, truth, prediction in expected:
        assert f"<td>{source}</td><td>{truth}</td><td>{prediction}</td>" in page


def test_compare_of_runs_on_a_small_test_set_gives_the_interval_and_a_warning(noise_run, tmp_path, capsys):
    run = noise_run[0]
    same = shutil.copytree(run, tmp_path / "same")
    assert main(["compare", str(run), str(same), "--out", str(tmp_path / "c.html")]) == 0
    captured = capsys.readouterr()
    summary = json.loads((run / "summary.json").read_text())["test"]
    low, high = wilson_interval(summary["correct"], summary["total"])
    assert captured.out.count(f"(95% interval {low:.1%}-{high:.1%})") == 2
    assert captured.err.startswith("warning: only 6 test images")
    assert "only 6 test images" in (tmp_path / "c.html").read_text()


def test_the_reports_list_of_misclassified_files_counts_them_and_says_when_there_are_none():
    from lenet.insight.analysis import Mistake
    from lenet.insight.report import _mistakes_table

    assert "every test image right" in _mistakes_table([])
    one = _mistakes_table([Mistake(0, "a/1.png", "a", "b", 0.75)])
    assert "1 test image the model got wrong" in one and "<td>a/1.png</td>" in one and "75.0%" in one
