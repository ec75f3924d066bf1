"""Plots, the HTML report (opened in a real headless browser), run comparison, TensorBoard."""

import io
import json
import os
import shutil
import sys
from dataclasses import replace

import pytest
import torch
from PIL import Image

import lenet
import lenet.data.load
from lenet import TrainConfig, get_recipe, load, train
from lenet.insight.analysis import confident_mistakes, feature_maps, first_layer_filters, one_per_class
from lenet.cli import main
from lenet.data.registry import DATASETS
from lenet.core.errors import LenetError
from lenet.training.metrics import evaluate
from lenet.models.lenet import ACTIVATIONS, create_model, list_models, model_config
from lenet.insight.report import compare, write_report
from lenet.runs.directory import METRICS_FILE, PLOTS_DIR, read_run

CLASSES = DATASETS["fashion-mnist"].classes

# Only a missing matplotlib skips: an error inside plots.py itself must fail the tests, not hide them.
pytest.importorskip("matplotlib", reason="matplotlib is in the dev extra: pip install -e '.[dev]'")
from lenet.insight import plots  # noqa: E402

FIGURES = {"curves", "confusion", "mistakes", "filters", "features1", "features2"}
CHROMIUM = os.environ.get("LENET_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


@pytest.fixture(scope="module")
def data(fmnist):
    return fmnist.subset(1000, 300)


@pytest.fixture(scope="module")
def run(data, tmp_path_factory):
    recipe = replace(get_recipe("default"), model="lenet_bn", epochs=2, batch_size=100)
    out = tmp_path_factory.mktemp("runs")
    return train(TrainConfig(recipe=recipe, device="cpu", out=str(out), name="bn", progress=False), data=data).run_dir


@pytest.fixture(scope="module")
def report(run, data):
    return write_report(run, data)


def expected_size(name: str) -> tuple[int, int]:
    width, height = plots.SIZES[name.rstrip("12")]  # features1, features2 -> features
    return round(width * plots.DPI), round(height * plots.DPI)


def annotated_counts(fig) -> list[list[int]]:
    """The numbers written on a plots.confusion figure, read back from its text at each cell."""
    ax = fig.axes[0]
    n = len(ax.get_xticks())
    matrix = [[0] * n for _ in range(n)]
    for text in ax.texts:
        j, i = text.get_position()
        matrix[round(i)][round(j)] = int(text.get_text())
    return matrix


# --- the plots ----------------------------------------------------------------------------


def test_every_plot_is_saved_at_its_size(run, report):
    assert set(report.figures) == FIGURES
    for name in FIGURES:
        with Image.open(run / PLOTS_DIR / f"{name}.png") as png:
            assert png.format == "PNG" and png.size == expected_size(name), name


def test_confusion_plot_shows_the_matrix_lenet_eval_prints(run, tmp_path, capsys, monkeypatch):
    run = shutil.copytree(run, tmp_path / "run")  # the full test set, as `lenet eval` uses
    assert main(["eval", str(run), "--json", "--device", "cpu"]) == 0
    printed = json.loads(capsys.readouterr().out)["confusion_matrix"]

    drawn = []
    draw = plots.confusion

    def spy(matrix, classes):
        fig = draw(matrix, classes)
        drawn.append(annotated_counts(fig))
        return fig

    monkeypatch.setattr(plots, "confusion", spy)
    report = write_report(run, device="cpu")
    assert report.evaluation.confusion.tolist() == printed
    assert drawn == [printed]  # the numbers written on the heat map


def test_confusion_annotations_are_the_counts(data, run):
    evaluation = evaluate(load(run), data.test_images, data.test_labels)
    fig = plots.confusion(evaluation.confusion, CLASSES)
    assert annotated_counts(fig) == evaluation.confusion.tolist()
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == list(CLASSES)


def test_samples_grid_titles_each_image_with_its_class(data):
    images, labels = data.train_images[:25], data.train_labels[:25]
    fig = plots.samples(images, labels, CLASSES)
    drawn = [ax for ax in fig.axes if ax.images]
    assert [ax.get_title() for ax in drawn] == [CLASSES[label] for label in labels.tolist()]
    assert all((ax.images[0].get_array() == image[0].numpy()).all() for ax, image in zip(drawn, images))
    assert len(fig.axes) == 30  # 3 rows of 10, the last row's spare cells blank
    assert Image.open(io.BytesIO(plots.png_bytes(fig))).size == expected_size("samples")


def test_mistakes_grid_shows_each_mistake_with_its_classes(data):
    logits = torch.randn(len(data.test_labels), len(CLASSES), generator=torch.Generator().manual_seed(0))
    found = confident_mistakes(logits, data.test_labels, 24)
    drawn = [ax for ax in plots.mistakes(data.test_images, found, CLASSES).axes if ax.images]
    assert len(drawn) == 24
    for ax, index, true, predicted in zip(drawn, found.indices.tolist(), found.true.tolist(), found.predicted.tolist()):
        assert (ax.images[0].get_array() == data.test_images[index, 0].numpy()).all()
        assert ax.get_title().startswith(f"true: {CLASSES[true]}\npred: {CLASSES[predicted]}\n")


@pytest.mark.parametrize("name", list(list_models()))
def test_feature_maps_for_every_model(name, data):
    """Found by layer type: batch norm shifts the activations to other indices."""
    model = create_model(name)
    config = model_config(name)
    maps = feature_maps(model, data.test_images[:3])
    # Each block's maps come out of its activation: before the pool, or after it where the model pools first.
    first, pooled = 28 + 2 * config.padding - 4, 2 if config.norm_after_pool else 1
    second = first // 2 - 4
    assert [m.block for m in maps] == [1, 2]
    assert [m.kind for m in maps] == [ACTIVATIONS[config.activation].__name__] * 2
    assert maps[0].maps.shape == (3, config.channels[0], first // pooled, first // pooled)
    assert maps[1].maps.shape == (3, config.channels[1], second // pooled, second // pooled)
    assert first_layer_filters(model).shape == (config.channels[0], 1, 5, 5)
    assert not any(m._forward_hooks for m in model.modules())  # hooks removed
    fig = plots.feature_maps(data.test_images[:3], data.test_labels[:3], maps[1], CLASSES)
    assert Image.open(io.BytesIO(plots.png_bytes(fig))).size == expected_size("features")


def test_report_feature_maps_belong_to_the_images_shown(run, data, monkeypatch):
    """The default recipe's model predicts with ten views; its figures show one pass of the shown images."""
    model = load(run)
    assert model.views.count == 10
    drawn, real = [], plots.feature_maps
    monkeypatch.setattr(plots, "feature_maps", lambda shown, labels, maps, classes: drawn.append((shown, maps))
                        or real(shown, labels, maps, classes))  # fmt: skip
    write_report(run, data)
    assert [maps.block for _, maps in drawn] == [1, 2]
    for shown, maps in drawn:
        seen = []
        layer = dict(model.net.named_modules())[maps.layer]
        hook = layer.register_forward_hook(lambda m, i, out: seen.append(out))
        with torch.no_grad():
            model.net(shown.float() / 255)
        hook.remove()
        assert torch.allclose(maps.maps, seen[0], atol=1e-5), maps.layer


def test_confident_mistakes_are_wrong_and_sorted():
    labels = torch.tensor([0, 1, 2, 3])
    logits = torch.tensor([[5.0, 0, 0, 0], [0, 0, 4, 0], [0, 1, 0, 0], [0, 0, 0, 3]])
    found = confident_mistakes(logits, labels, 10)
    assert found.indices.tolist() == [1, 2] and found.predicted.tolist() == [2, 1]
    assert found.probability[0] > found.probability[1] > 0.25


def test_one_image_per_class():
    assert one_per_class(torch.tensor([3, 3, 1, 3, 0, 1, 2]), 3).tolist() == [0, 2, 4]


# --- the HTML report and comparison -----------------------------------------------------


def test_report_html_holds_results_and_every_plot_inline(report):
    html = report.path.read_text()
    assert html.count('<img src="data:image/png;base64,') == len(FIGURES)
    assert "http://" not in html and "https://" not in html  # nothing to fetch
    assert f"{report.evaluation.accuracy:.2%}" in html and all(name in html for name in CLASSES)
    assert "accuracy (image and mirror only)" in html  # per-epoch figures are not the final model's views


def test_report_reads_at_a_glance(run, report):
    """Contents that link to every section, formatted epochs, one sentence on the two accuracies,
    per-class precision and recall."""
    import re
    from html import unescape

    html = report.path.read_text()
    nav = html.split("<nav", 1)[1].split("</nav>", 1)[0]
    targets = re.findall(r'href="#([^"]+)"', nav)
    assert len(targets) == len(re.findall(r"<section ", html)) >= 8
    assert all(f'<section id="{target}">' in html for target in targets)

    epochs = html.split('<section id="epochs">', 1)[1].split("</section>", 1)[0]
    assert "_" not in epochs.split("</thead>")[0]  # headings in words, not metrics.csv's column names
    metrics = read_run(run).metrics
    for row in metrics:
        assert f"{row['train_accuracy']:.2%}" in epochs and f"{row['train_loss']:.4f}" in epochs
        lr = f"{row['lr']:.3g}"  # the records round it already; where they did not, its repr would show
        assert lr in epochs and (repr(row["lr"]) == lr or repr(row["lr"]) not in epochs)
    assert "images per second" in epochs and "learning rate at start" in epochs

    text = unescape(html)
    assert ("The test accuracy above is the finished model's on all 300 test images, each judged by averaging "
            "the image and the image moved 1 pixel up, down, left and right, and their mirrors.") in text
    assert ("The accuracy per epoch (curves and Epochs table) is on the test images, judged by the image and its "
            "mirror only (2 of the 10 views") in text

    per_class = html.split('<section id="per-class-precision-and-recall">', 1)[1].split("</section>", 1)[0]
    for name, precision in zip(CLASSES, report.evaluation.per_class_precision):
        assert f"<td>{name}</td>" in per_class and f"{precision:.2%}" in per_class


def test_each_filter_has_its_own_scale_and_says_it(data, run):
    weights = first_layer_filters(load(run).net)
    weights[0] *= 100  # one strong filter must not wash out the others
    fig = plots.filters(weights)
    shown = [ax for ax in fig.axes if ax.images]
    assert len(shown) == len(weights)
    for ax, kernel in zip(shown, weights):
        limit = kernel.abs().max().item()
        assert ax.images[0].get_clim() == pytest.approx((-limit, limit))
        assert ax.get_title().endswith(f"±{limit:.2f}")


def test_learning_curves_label_both_panels(run):
    fig = plots.curves(read_run(run).metrics)
    loss_ax, acc_ax = fig.axes[:2]
    for ax in (loss_ax, acc_ax):
        assert ax.get_legend() is not None
        assert [t.get_text() for t in ax.get_legend().get_texts()] == ["train", "test"]


def test_compare_writes_curves_and_a_table(run, tmp_path, capsys):
    other = shutil.copytree(run, tmp_path / "other")
    out = tmp_path / "cmp" / "compare.html"
    assert main(["compare", str(run), str(other), "--out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "test accuracy" in lines[0] and lines[1].startswith("bn ") and lines[2].startswith("other ")
    final = json.loads((run / "summary.json").read_text())["test"]["accuracy"]
    assert f"{final:.2%}" in lines[1] and " test (epoch " in lines[1]  # the model's figure, then the best epoch's
    assert out.read_text().count("<tr>") == 3  # header and two runs
    with Image.open(out.with_suffix(".png")) as png:
        assert png.size == expected_size("curves")


def test_compare_refuses_to_overwrite_an_earlier_comparison_unless_forced(run, tmp_path, capsys):
    other = shutil.copytree(run, tmp_path / "other")
    out = tmp_path / "compare.html"
    out.write_text("an earlier comparison")
    assert main(["compare", str(run), str(other), "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lenet compare: error:") and f"{out} already exists" in err[0]
    assert "--force" in err[0] and out.read_text() == "an earlier comparison"
    assert not out.with_suffix(".png").exists()
    # the curves' file alone is an earlier comparison's too
    out.unlink()
    out.with_suffix(".png").write_bytes(b"earlier curves")
    assert main(["compare", str(run), str(other), "--out", str(out)]) == 1
    assert "compare.png already exists" in capsys.readouterr().err
    assert not out.exists() and out.with_suffix(".png").read_bytes() == b"earlier curves"
    # --force overwrites, and says what it replaced and where it wrote
    assert main(["compare", str(run), str(other), "--out", str(out), "--force"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last == f"comparison written to {out} (curves: {out.with_suffix('.png')}), replacing the earlier compare.png"
    assert out.read_text().count("<tr>") == 3
    # the library refuses too: compare() is what the notebook calls
    with pytest.raises(LenetError, match="already exist .*--force"):
        compare([run, other], out)


@pytest.mark.parametrize(
    "make, fragment",
    [
        (lambda tmp: tmp / "nope", "no such run directory"),
        (lambda tmp: tmp, "no metrics.csv"),
    ],
)
def test_bad_run_is_one_line_error(make, fragment, tmp_path, capsys):
    assert main(["report", str(make(tmp_path))]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and fragment in err[0] and err[0].startswith("lenet report: error:")


def test_bad_metrics_and_too_few_runs(run, tmp_path):
    broken = shutil.copytree(run, tmp_path / "broken")
    (broken / METRICS_FILE).write_text("epoch,train_loss\n1,abc\n")
    with pytest.raises(LenetError, match="not a lenet metrics file"):
        read_run(broken)
    with pytest.raises(LenetError, match="at least two runs"):
        compare([run])


# --- train: the report after training, TensorBoard, without matplotlib --------------------


@pytest.fixture
def small_cli_data(data, monkeypatch):
    # `lenet train` loads the whole set; give it the subset so it trains in seconds (conftest's
    # patched_functions_are_reached fails the test if the CLI stops calling this name).
    monkeypatch.setattr(lenet.data.load, "load_dataset", lambda *a, **k: data)


def train_args(out, *extra):
    return ["train", "--model", "lenet_bn", "--epochs", "1", "--batch-size", "100", "--device", "cpu",
            "--no-progress", "--out", str(out), "--name", "r", *extra]  # fmt: skip


def test_train_writes_the_report_and_tensorboard(small_cli_data, tmp_path, capsys):
    tensorboard = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    assert main(train_args(tmp_path, "--tensorboard")) == 0
    run = tmp_path / "r"
    assert f"report written to {run / 'report.html'}" in capsys.readouterr().out
    assert {p.stem for p in (run / PLOTS_DIR).iterdir()} == FIGURES
    events = tensorboard.EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    assert {"loss/train", "accuracy/test", "lr"} <= set(events.Tags()["scalars"])
    assert {f"report/{name}" for name in FIGURES} == set(events.Tags()["images"])


def test_train_without_matplotlib_still_trains_and_says_how(small_cli_data, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "lenet.insight.plots", None)
    monkeypatch.delattr(lenet.insight, "plots", raising=False)  # `from lenet.insight import plots` looks here first
    assert main(train_args(tmp_path)) == 0
    out = capsys.readouterr().out
    notes = [line for line in out.splitlines() if "lenet[plots]" in line]
    assert len(notes) == 1 and notes[0].startswith("no report: plots need matplotlib")
    assert (tmp_path / "r" / "model.safetensors").is_file() and not (tmp_path / "r" / "report.html").exists()
    assert main(["report", str(tmp_path / "r")]) == 1
    assert "pip install 'lenet[plots]'" in capsys.readouterr().err


def test_tensorboard_missing_is_one_line_before_training(small_cli_data, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    assert main(train_args(tmp_path, "--tensorboard")) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install 'lenet[tensorboard]'" in err[0]
    assert not (tmp_path / "r").exists()


def test_report_out_builds_a_runs_report_elsewhere_and_leaves_the_run_as_it_was(data, run, tmp_path, capsys, monkeypatch):
    import lenet.insight.report

    monkeypatch.setattr(lenet.insight.report, "load_model_data", lambda *a, **k: data)  # report.py's own name for it
    before = {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert main(["report", str(run), "--out", str(tmp_path / "elsewhere")]) == 0
    assert f"report written to {tmp_path / 'elsewhere' / 'report.html'}" in capsys.readouterr().out
    assert {p.stem for p in (tmp_path / "elsewhere" / PLOTS_DIR).iterdir()} == FIGURES
    assert {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


def test_resume_of_a_finished_run_with_report_rebuilds_only_the_report(data, run, capsys, monkeypatch):
    import lenet.insight.report

    monkeypatch.setattr(lenet.insight.report, "load_model_data", lambda *a, **k: data)
    (run / "report.html").unlink(missing_ok=True)
    others = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    assert main(["train", "--resume", str(run), "--report", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert f"{run} is finished (2 of 2 epochs" in out and "nothing to resume" in out and "report written to" in out
    assert (run / "report.html").is_file()
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file() and p.name != "report.html"} == others


# --- in a real browser ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed (it is in the dev extra)")
    if not os.access(CHROMIUM, os.X_OK):
        _unavailable(f"no chromium at {CHROMIUM}; `make test` installs Debian's (scripts/get-browser.sh)")
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def _unavailable(reason: str):
    if os.environ.get("CI"):
        pytest.fail(f"{reason}: under CI the browser test must run")
    pytest.skip(reason)


def open_in_browser(browser, path):
    """Load a page; return its images' state, console errors and every URL it requested."""
    page = browser.new_page()
    errors, requests = [], []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("request", lambda request: requests.append(request.url))
    page.goto(path.resolve().as_uri(), wait_until="load")
    images = page.evaluate("[...document.images].map(i => [i.alt, i.complete, i.naturalWidth, i.naturalHeight])")
    title = page.title()
    page.close()
    return title, images, errors, requests


def test_report_in_a_browser_loads_every_image_without_errors(browser, report):
    title, images, errors, requests = open_in_browser(browser, report.path)
    assert errors == []
    assert requests == [report.path.resolve().as_uri()]  # self-contained: nothing else fetched
    assert title == f"lenet run {report.path.parent.name}"
    assert len(images) == len(FIGURES)
    for alt, complete, width, height in images:
        assert complete and width > 0 and height > 0, alt


def test_comparison_in_a_browser(browser, run, tmp_path):
    other = shutil.copytree(run, tmp_path / "other")
    result = compare([run, other], tmp_path / "compare.html")
    _, images, errors, requests = open_in_browser(browser, result.html)
    assert errors == [] and requests == [result.html.resolve().as_uri()]
    assert [(w, h) for _, _, w, h in images] == [expected_size("curves")]


def test_report_on_a_phone_keeps_its_width_and_its_text_size(browser, report):
    """At 390 px the tables scroll inside their own frames: the page does not, and no text shrinks."""
    page = browser.new_page(viewport={"width": 390, "height": 844})
    try:
        page.goto(report.path.resolve().as_uri(), wait_until="load")
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        per_class = page.locator("#per-class-precision-and-recall .table-frame")
        box = per_class.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 390, box
        sizes = page.evaluate("[...document.querySelectorAll('td, th')].map(c => parseFloat(getComputedStyle(c).fontSize))")
        assert min(sizes) >= 14, min(sizes)
        frames = page.evaluate("[...document.querySelectorAll('.table-frame')].map(f => [f.scrollWidth > f.clientWidth, "
                               "getComputedStyle(f).overflowX, f.tabIndex])")  # fmt: skip
        assert any(wide for wide, _, _ in frames)  # some table is wider than the screen: its frame scrolls
        assert all(overflow == "auto" and tab == 0 for _, overflow, tab in frames)  # and the keyboard reaches it
        font = page.evaluate("getComputedStyle(document.body).fontFamily")
        assert "Noto Sans CJK SC" in font and font.rstrip().endswith("sans-serif")  # falls back to system CJK fonts
    finally:
        page.close()
