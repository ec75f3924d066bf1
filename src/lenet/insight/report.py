"""`lenet report` and `lenet compare`: what a run learned, as PNG files and one HTML page.

A report evaluates the run's saved model exactly as `lenet eval` does (checkpoint.load, then
metrics.evaluate), so its confusion matrix is the one `lenet eval` prints. It runs after
training, never inside it; without matplotlib it raises PlotsUnavailable and nothing else.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import ModuleType

import torch

from lenet.insight import html_page as H
from lenet.insight.analysis import (
    MISTAKES_COLUMNS,
    Mistake,
    confident_mistakes,
    feature_maps,
    first_layer_filters,
    misclassified,
    one_per_class,
)
from lenet.runs.checkpoint import load
from lenet.data.dataset import Dataset
from lenet.data.load import load_model_data
from lenet.data.registry import is_user_data, shown_name
from lenet.core.device import resolve_device
from lenet.core.errors import LenetError
from lenet.core.files import write_bytes, write_text
from lenet.core.stats import interval_text, is_small, small_test_warning
from lenet.core.text import plural
from lenet.training.metrics import EVAL_CHUNK, Evaluation, predict_logits, score
from lenet.core.progress import stage
from lenet.models.lenet import count_parameters
from lenet.models.views import Classifier
from lenet.runs.compat import saved_data_spec
from lenet.runs.directory import PLOTS_DIR, REPORT_FILE, Run, read_run
from lenet.runs.metrics import judged

MISTAKES = 24  # the grid in plots.mistakes is 3 x 8
EXAMPLES = 4  # test images, of different classes, shown through the feature maps
PLOTS_HINT = "pip install 'lenet[plots]'"

# name -> (heading, caption) for each figure, in report order; features1/2 are the conv blocks.
FIGURES = {
    "curves": ("Learning curves", "Per epoch, from metrics.csv. The train loss includes any label smoothing."),
    "confusion": ("Confusion matrix", "Rows: true class; columns: prediction. The matrix `lenet eval` prints."),
    "mistakes": ("Most confident mistakes", "Wrong answers the model was surest of, with its probability."),
    "filters": ("First-layer filters", "The kernels of the first convolution, each on its own colour scale: "
                "the number above a filter is the weight its full red stands for (full blue, minus it); for a "
                "colour model, in RGB around a mid-grey 0, each colour as bright as the filter weighs it up."),
    "features1": ("Feature maps: block 1", "What the first convolution block responds to, one row per test image."),
    "features2": ("Feature maps: block 2", "The second block's maps: coarser, combining the first block's features."),
}


class PlotsUnavailable(LenetError):
    """matplotlib is not installed; training and evaluation work without it."""


def load_plots() -> ModuleType:
    try:
        from lenet.insight import plots
    except ImportError:
        raise PlotsUnavailable(f"plots need matplotlib, which is not installed: {PLOTS_HINT}") from None
    return plots


# --- one run ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Report:
    path: Path  # RUN/report.html
    figures: dict[str, bytes]  # name -> PNG, as saved in RUN/plots/NAME.png
    evaluation: Evaluation
    mistakes: list[Mistake] | None = None  # the misclassified files, for a folder or CSV data set


def write_report(
    run_dir: str | os.PathLike,
    data: Dataset | None = None,
    data_dir: str | None = None,
    device: str = "cpu",
    batch_size: int = EVAL_CHUNK,
    progress: bool = False,
    out: str | os.PathLike | None = None,
    dataset: str | None = None,
) -> Report:
    """Evaluate a run's model on the test set, save its plots and report.html in `out` (default: the
    run directory, which is left untouched otherwise); with `progress`, a line per stage on a terminal.
    `dataset` names the run's data (--dataset) when it is the user's own: the run's files never
    choose a path to read (see data.load.load_model_data)."""
    plots = load_plots()
    run = read_run(run_dir)
    device = resolve_device(device)
    model = load(run.path, device)
    if data is None:
        with stage(f"loading {dataset or shown_name(model.data.name)}", progress):
            data = load_model_data(model.data, dataset, data_dir, own=True)
    images, labels = data.test_images.to(device), data.test_labels.to(device)
    with stage(f"evaluating {len(labels):,} test images ({model.views.describe()})", progress):
        logits = predict_logits(model, images, batch_size, "evaluating" if progress else None)
    evaluation = score(logits, labels, model.data.classes)
    with stage("drawing the figures", progress):
        figures = draw_figures(plots, run, model, images.cpu(), labels.cpu(), evaluation, logits)
    target = Path(out) if out is not None else run.path
    for name, png in figures.items():
        write_bytes(target / PLOTS_DIR / f"{name}.png", png)
    path = target / REPORT_FILE
    # Named mistakes only where the test images have names (a folder's files, a CSV's lines): a
    # registry set's 10,000 test images have indices, and its mistakes run to hundreds.
    named = misclassified(logits, labels, data.test_sources, model.data.classes) if data.test_sources else None
    write_text(path, render_report(run, evaluation, count_parameters(model), figures, named))
    return Report(path, figures, evaluation, named)


def draw_figures(
    plots: ModuleType,
    run: Run,
    model: Classifier,
    images: torch.Tensor,
    labels: torch.Tensor,
    evaluation: Evaluation,
    logits: torch.Tensor,
) -> dict[str, bytes]:
    examples = one_per_class(labels, EXAMPLES)
    shown, shown_labels = images[examples], labels[examples]
    figures = {
        "curves": plots.curves(run.metrics, f"{run.name}: learning curves"),
        "confusion": plots.confusion(evaluation.confusion, model.data.classes),
        "mistakes": plots.mistakes(images, confident_mistakes(logits, labels, MISTAKES), model.data.classes),
        "filters": plots.filters(first_layer_filters(model.net)),
    }
    for maps in feature_maps(model.net, shown):  # the network alone: one pass, the image as shown
        figures[f"features{maps.block}"] = plots.feature_maps(shown, shown_labels, maps, model.data.classes)
    return {name: plots.png_bytes(fig) for name, fig in figures.items()}


def render_report(run: Run, evaluation: Evaluation, parameters: int, figures: dict[str, bytes],
                  mistakes: list[Mistake] | None = None) -> str:  # fmt: skip
    sections = {
        "Results": [H.key_value_table(_results(run, evaluation, parameters), ("result", "value")),
                    H.paragraph(_two_accuracies(run, evaluation))],
        "Per-class precision and recall": [_per_class_table(evaluation)],
        **{heading: [H.png_figure(figures[name], heading, caption)]
           for name, (heading, caption) in FIGURES.items() if name in figures},
        **({"Misclassified files": [_mistakes_table(mistakes)]} if mistakes is not None else {}),
        "Epochs": [_epochs_table(run)],
        "Configuration": [H.key_value_table(H.flatten(run.config.model_dump(mode="json", by_alias=True)))],
    }  # fmt: skip
    return H.page(
        f"lenet run {run.name}",
        [H.contents(list(sections)), *(H.section(heading, *parts) for heading, parts in sections.items())],
        subtitle=f"{run.path} - {evaluation.total:,} test images, started {run.config.started or '?'}",
    )


def _two_accuracies(run: Run, evaluation: Evaluation) -> str:
    """One plain sentence on why the per-epoch accuracy and the final test accuracy differ."""
    split, views, per_epoch = _eval_split(run), run.views, replace(run.views, shift=0)
    final = (f"The test accuracy above is the finished model's on all {evaluation.total:,} test images, "
             f"each judged by {'averaging ' if views.count > 1 else ''}{views.which()}.")  # fmt: skip
    where = ("the test images" if split == "test" else
             "validation images held out of training (the test set judges only the finished model)")  # fmt: skip
    how = ("the same views" if per_epoch == views else
           f"{per_epoch.which()} only ({per_epoch.count} of the {views.count} views, a fraction of the cost), "
           "so it can differ from the final figure")  # fmt: skip
    return f"{final} The accuracy per epoch (curves and Epochs table) is on {where}, judged by {how}."


# metrics.csv column -> (heading, format); the SPLIT_ columns take their split's name.
EPOCH_COLUMNS = {
    "epoch": ("epoch", "{:.0f}"),
    "train_loss": ("train loss", "{:.4f}"),
    "train_accuracy": ("train accuracy", "{:.2%}"),
    "SPLIT_loss": ("{split} loss", "{:.4f}"),
    "SPLIT_accuracy": ("{split} accuracy", "{:.2%}"),
    "seconds": ("training (s)", "{:.1f}"),
    "images_per_s": ("images per second", "{:,.0f}"),
    "eval_seconds": ("evaluation (s)", "{:.1f}"),
    "lr": ("learning rate at start", "{:.3g}"),
}


def _epochs_table(run: Run) -> str:
    split = _eval_split(run)
    columns = list(run.metrics[0])
    formats = [EPOCH_COLUMNS.get(column.replace(f"{split}_", "SPLIT_", 1), (column, "{}")) for column in columns]
    headings = [heading.format(split=split) for heading, _ in formats]
    rows = [[H.Number("" if math.isnan(row[column]) else fmt.format(row[column])) for column, (_, fmt) in zip(columns, formats)]
            for row in run.metrics]  # fmt: skip
    return H.table(headings, rows)


def _results(run: Run, evaluation: Evaluation, parameters: int) -> dict[str, str]:
    last = run.metrics[-1]
    split = _eval_split(run)
    small = is_small(evaluation.total)
    interval = f", {interval_text(evaluation.correct, evaluation.total)}" if small else ""
    return {
        "test accuracy": f"{evaluation.accuracy:.2%} ({evaluation.correct:,} / {evaluation.total:,}{interval})",
        **({"warning": small_test_warning(evaluation.correct, evaluation.total)} if small else {}),
        "test loss": f"{evaluation.loss:.4f}",
        f"best epoch's {split} accuracy{_epoch_views(run)}": _best_epoch(run),
        "final train loss / accuracy": f"{last['train_loss']:.4f} / {last['train_accuracy']:.2%}",
        "recipe": run.config.recipe_name,
        "model": str(run.config.recipe.get("model", "?")),
        "parameters": f"{parameters:,}",
        "epochs": f"{len(run.metrics)}" + _epochs_note(run),
        "training time": f"{_train_seconds(run):.1f} s",
    }


def _epochs_note(run: Run) -> str:
    if run.summary is None:
        return " (unfinished: no summary.json)"
    if run.summary.stopped_early is not None:
        return (f" of {run.config.recipe.get('epochs', '?')}: stopped early, no better validation accuracy in the "
                f"{run.config.patience} judged epochs after epoch {run.summary.best_epoch}")  # fmt: skip
    return ""


def _best_epoch(run: Run) -> str:
    split = _eval_split(run)
    rows = judged(run.metrics, f"{split}_accuracy")
    if not rows:
        return "none judged"
    best = max(rows, key=lambda row: row[f"{split}_accuracy"])
    return f"{best[f'{split}_accuracy']:.2%} {split} (epoch {int(best['epoch'])})"


def _epoch_views(run: Run) -> str:
    # Per-epoch figures skip the shifted test-time views (training/loop.py's evaluate_epoch), the final
    # ones do not.
    return " (image and mirror only)" if run.views.shift else ""


def _per_class_table(evaluation: Evaluation) -> str:
    counts = evaluation.confusion
    rows = [
        (name, H.Number(f"{recall:.2%}"), H.Number(f"{precision:.2%}"), int(counts[i, i]), int(counts[i].sum()),
         int(counts[:, i].sum()))
        for i, (name, recall, precision) in enumerate(zip(evaluation.classes, evaluation.per_class_accuracy,
                                                          evaluation.per_class_precision))
    ]  # fmt: skip
    note = H.paragraph("Recall: of the images of a class, the share predicted as it (its accuracy). "
                       "Precision: of the images predicted as a class, the share that are it.")  # fmt: skip
    return note + "\n" + H.table(("class", "recall", "precision", "right", "images", "predicted as the class"), rows)


def _mistakes_table(mistakes: list[Mistake]) -> str:
    if not mistakes:
        return H.paragraph("The model got every test image right.")
    note = H.paragraph(f"{plural(len(mistakes), 'test image')} the model got wrong, in test-set order, by file "
                       "(relative to the folder) or CSV line; lenet eval --mistakes FILE.csv "
                       "writes this list.")  # fmt: skip
    rows = [(m.path, m.truth, m.prediction, H.Number(f"{m.confidence:.1%}")) for m in mistakes]
    return note + "\n" + H.table(MISTAKES_COLUMNS, rows)


# --- several runs -----------------------------------------------------------------------

COMPARE_COLUMNS = (
    "run", "data set", "recipe", "model", "seed", "epochs", "parameters",
    "test accuracy", "test loss", "best epoch", "training time",
)  # fmt: skip


@dataclass(frozen=True)
class Comparison:
    html: Path
    png: Path
    rows: list[tuple[str, ...]]  # one per run, COMPARE_COLUMNS
    warning: str = ""  # for a small test set (core/stats.py), else ""
    replaced: list[Path] = field(default_factory=list)  # files of an earlier comparison overwritten (force=True)


def compare(run_dirs: list[str | os.PathLike], out: str | os.PathLike = "compare.html",
            force: bool = False) -> Comparison:  # fmt: skip
    """Overlaid learning curves (OUT with .png) and a side-by-side table (OUT, HTML). An existing OUT or its
    .png is refused, before any run is read, unless `force`: a second comparison must not silently replace
    the first (the default name, compare.html, is the same every time)."""
    if len(run_dirs) < 2:
        raise LenetError("compare needs at least two runs")
    html, png_path = Path(out), Path(out).with_suffix(".png")
    if html.suffix.lower() not in (".html", ".htm"):
        raise LenetError(f"{html}: the comparison is an HTML file; give a name ending in .html")
    existing = [path for path in (html, png_path) if path.exists()]
    if existing and not force:
        raise LenetError(f"{' and '.join(map(str, existing))} already "
                         f"{'exist' if len(existing) > 1 else 'exists'} (an earlier comparison?); "
                         "give another --out, or --force to overwrite")  # fmt: skip
    plots = load_plots()
    runs = [read_run(path) for path in run_dirs]
    labels = _labels(runs)
    _same_test_set(runs, labels)
    rows = [_comparison_row(label, run) for label, run in zip(labels, runs)]
    tested = next((run.summary.test for run in runs if run.summary), None)  # one test set: _same_test_set
    warning = small_test_warning(tested.correct, tested.total) if tested else ""
    curves = {label: run.metrics for label, run in zip(labels, runs)}
    png = plots.png_bytes(plots.compare_curves(curves, f"{len(runs)} runs: solid test, dashed train"))
    write_bytes(png_path, png)
    page = H.page(
        f"lenet: {len(runs)} runs compared",
        [
            H.section("Results", H.table(COMPARE_COLUMNS, rows),
                      *([H.paragraph(f"Warning: {warning}")] if warning else [])),  # fmt: skip
            H.section("Learning curves", H.png_figure(png, "learning curves", "Solid: test. Dashed: train.")),
        ],
    )
    write_text(html, page)
    return Comparison(html, png_path, rows, warning, existing)


def comparison_text(rows: list[tuple[str, ...]]) -> str:
    """The table as aligned plain text, for the terminal."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(COMPARE_COLUMNS, *rows)]
    lines = [COMPARE_COLUMNS, *rows]
    return "\n".join("  ".join(f"{cell:<{w}}" for cell, w in zip(line, widths)).rstrip() for line in lines)


def _comparison_row(label: str, run: Run) -> tuple[str, ...]:
    # The final test figures are the finished model's (every test-time view); a run without
    # summary.json has none yet, and its per-epoch figures would not be the same thing.
    test = run.summary.test if run.summary else None
    return (
        label,
        _data_set(run)[0],
        run.config.recipe_name,
        str(run.config.recipe.get("model", "?")),
        str(run.config.seed),
        str(len(run.metrics)),
        _parameters(run),
        (f"{test.accuracy:.2%}" + (f" ({interval_text(test.correct, test.total)})" if is_small(test.total) else "")
         if test else "unfinished"),  # fmt: skip
        f"{test.loss:.4f}" if test else "unfinished",
        _best_epoch(run),
        f"{_train_seconds(run):.1f} s",
    )


def _data_set(run: Run) -> tuple[str, str]:
    """The data set a run was tested on: as shown (a user's own by its digest's first digits too),
    and what tells one test set from another (a registry name; for a user's own data, its digest,
    which changes with any image and with the split)."""
    name = run.config.data.name
    try:
        digest = saved_data_spec(run.config.data).sha256
    except LenetError as e:
        raise LenetError(f"{run.path}/config.json: field data: {e}") from None
    if not digest:  # a registry data set, whole
        return name, name
    part = "" if is_user_data(name) else " (part of it)"
    return f"{shown_name(name)}{part} sha256 {digest[:12]}", digest


def _same_test_set(runs: list[Run], labels: list[str]) -> None:
    """Test accuracies are comparable on one test set only: runs on different ones are refused."""
    groups: dict[str, list[str]] = {}
    shown: dict[str, str] = {}
    for label, run in zip(labels, runs):
        text, key = _data_set(run)
        groups.setdefault(key, []).append(label)
        shown[key] = text
    if len(groups) > 1:
        listed = "; ".join(f"{shown[key]}: {', '.join(names)}" for key, names in groups.items())
        raise LenetError(f"these runs were tested on different data sets or test splits, whose accuracies do not "
                         f"compare ({listed}); compare the runs of one data set at a time")  # fmt: skip


def _labels(runs: list[Run]) -> list[str]:
    # Run directory names, unless two share a name (runs/a/x and runs/b/x): then paths.
    names = [run.name for run in runs]
    return names if len(set(names)) == len(names) else [str(run.path) for run in runs]


def _parameters(run: Run) -> str:
    if run.summary and run.summary.parameters:
        return f"{run.summary.parameters:,}"
    try:
        return f"{run.net_config.parameter_count:,}"
    except (KeyError, TypeError, LenetError):
        return "?"


def _eval_split(run: Run) -> str:
    for split in ("test", "val"):
        if f"{split}_accuracy" in run.metrics[0] and f"{split}_loss" in run.metrics[0]:
            return split
    raise LenetError(f"{run.path}: metrics.csv has no test or validation accuracy")


def _train_seconds(run: Run) -> float:
    if run.summary:
        return run.summary.train_seconds
    return sum(row.get("seconds", 0.0) for row in run.metrics)
