"""The `lenet` command: parse, call the library, print. No logic of its own."""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import math
import sys
import types
import typing
from dataclasses import replace
from typing import NoReturn

from lenet.core.errors import Interrupted, LenetError, UsageError
from lenet.core.text import plural, rounded


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, not argparse's usage block: what is wrong and where to look.
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


_TYPE_WORDS = {int: "whole number", float: "number", str: "word"}


def _number(kind, minimum, inclusive=True):
    """An argparse type: a number of `kind` at or above (or strictly above) `minimum`, checked by core.values."""
    from lenet.core.values import bounds, parse_value

    limits = bounds(low=minimum) if inclusive else bounds(above=minimum)

    def parse(text: str):
        try:
            return parse_value("", text, kind, limits)
        except LenetError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    parse.__name__ = _TYPE_WORDS[kind]  # argparse names the type in its messages
    return parse


positive_int, positive_float, nonnegative_float = _number(int, 1), _number(float, 0, False), _number(float, 0)
nonnegative_int = _number(int, 0)


def _port(text: str) -> int:
    port = nonnegative_int(text)
    if port > 65535:
        raise argparse.ArgumentTypeError(f"{text} is not a port (0-65535)")
    return port


def build_parser() -> argparse.ArgumentParser:
    from lenet.training.engine import Engine
    from lenet.data.registry import list_datasets
    from lenet.models.lenet import list_models
    from lenet.training.recipes import Recipe, list_recipes
    from lenet.training.loop import TrainConfig

    parser = _Parser(prog="lenet", description="LeNet on Fashion-MNIST: train, evaluate, inspect, predict.")
    parser.add_argument("--version", action="version", version=f"lenet {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    t = sub.add_parser("train", help="train a model and save the run", description="Train LeNet on Fashion-MNIST.")
    t.add_argument("--recipe", type=_recipe_choice, help=f"named hyperparameter set ({', '.join(list_recipes())}; "
                   f"default: {TrainConfig.recipe_name}) or a recipe .toml file (see lenet sweep's best_recipe.toml)")
    t.add_argument("--seed", type=nonnegative_int, help=f"seeds weights, shuffling and augmentation (default: {TrainConfig.seed})")
    t.add_argument("--dataset", type=_dataset_choice, help=f"{', '.join(list_datasets())}, folder:PATH (a folder per class) or csv:PATH "
                                     f"(default: {TrainConfig.dataset}); with --resume, where a run on your own data "
                                     "finds it again (it must be the same data)")  # fmt: skip
    t.add_argument("--skip-bad", action="store_const", const=True,
                   help="folder:PATH: train on the readable images, leaving unreadable files out (listed, and kept "
                        "in the run's config.json); without it, any unreadable file stops the load")  # fmt: skip
    _add_shape_flags(t)
    t.add_argument("--seeds", type=positive_int, help="train this many seeds from --seed on; report statistics")
    t.add_argument("--val-split", type=positive_int, help="hold out this many training images and evaluate every epoch on them")
    t.add_argument("--eval-every", type=nonnegative_int, metavar="N",
                   help="evaluate on the val/test split after every N-th epoch and the last; 0: the last only "
                        f"(default: {TrainConfig.eval_every}; the final figures are always computed)")  # fmt: skip
    t.add_argument("--deterministic", action="store_const", const=True, help="deterministic CUDA kernels (the CPU always is)")
    t.add_argument("--resume", metavar="RUN", help="continue RUN after its last completed epoch (its own config)")
    t.add_argument("--start-from", metavar="RUN", help="a new run starting from RUN's weights: fine-tuning on other "
                                                       "data (a new last layer where the classes differ), or a finished "
                                                       "run trained further; RUN's recipe unless --recipe says otherwise")  # fmt: skip
    t.add_argument("--patience", type=nonnegative_int, metavar="K",
                   help="early stopping: stop after K judged epochs without a better validation accuracy (needs "
                        "--val-split; default: 0, never)")  # fmt: skip
    _add_device(t, default=None)
    _add_data_dir(t)
    t.add_argument("--out", help=f"directory that holds run directories (default: {TrainConfig.out})")
    t.add_argument("--name", help="run directory name (default: RECIPE-seedN-TIMESTAMP); never overwritten")
    t.add_argument("--save-run", "--save-model", dest="save_run", action=argparse.BooleanOptionalAction, default=True,
                   help="write the run directory (config, metrics, weights); --no-save-run trains and prints only")
    t.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True, help="progress bar on a terminal")
    t.add_argument("--report", action=argparse.BooleanOptionalAction, default=None,
                   help="after training, save plots and RUN/report.html (needs matplotlib; default: yes, "
                        "and a resume keeps the run's choice)")  # fmt: skip
    t.add_argument("--tensorboard", action="store_const", const=True,
                   help="log scalars per epoch and the report's plots to RUN/tensorboard (needs tensorboard)")  # fmt: skip
    _add_field_flags(t.add_argument_group("recipe fields (each overrides the chosen recipe's; defaults: the default recipe)"),
                     Recipe)  # fmt: skip
    _add_field_flags(t.add_argument_group("engine (how a step runs; the maths stay the same)"), Engine)
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("eval", help="evaluate a run or checkpoint on the test set")
    e.add_argument("checkpoint", metavar="RUN_OR_CHECKPOINT")
    e.add_argument("--batch-size", type=positive_int, default=Recipe().eval_batch_size, help="images per forward pass")
    e.add_argument("--dataset", type=_dataset_choice, help="evaluate the model on another data set of its shape (default: its own, when a "
                                     "registry data set); folder:PATH or csv:PATH names your own, the one it trained "
                                     "on included: a checkpoint never chooses a path to read")  # fmt: skip
    _add_device(e)
    _add_data_dir(e)
    e.add_argument("--json", action="store_true", help="print JSON instead of tables")
    e.add_argument("--mistakes", metavar="FILE.csv",
                   help="also write the misclassified test images to FILE.csv: path (a folder's file, a CSV's "
                        "line, else the test index), truth, prediction, confidence")  # fmt: skip
    e.set_defaults(func=cmd_eval)

    v = sub.add_parser("preview", help="a PNG of the inputs a data set gives the model, a few per class")
    v.add_argument("dataset", metavar="DATASET", help="fashion-mnist, mnist, kmnist, folder:PATH or csv:PATH")
    v.add_argument("--out", default="preview.png", help="the PNG file (default: preview.png)")
    v.add_argument("--per-class", type=positive_int, default=8, metavar="N",
                   help="images a class (default: 8, at most 32)")  # fmt: skip
    v.add_argument("--skip-bad", action="store_true",
                   help="leave a folder's unreadable images out instead of refusing it")  # fmt: skip
    _add_shape_flags(v)
    _add_data_dir(v)
    v.set_defaults(func=cmd_preview)

    p = sub.add_parser("predict", help="classify your own images")
    p.add_argument("checkpoint", metavar="RUN_OR_CHECKPOINT")
    p.add_argument("images", metavar="IMAGE", nargs="+",
                   help="image files (PNG, JPEG, GIF, BMP, WebP; any size and mode) or directories of them")
    p.add_argument("--top-k", type=positive_int, default=3,
                   help="classes per image, at most the model's classes, as POST /predict's top_k (default: 3)")
    p.add_argument("--skip-bad", action="store_true", help="leave unreadable images out and name them")
    p.add_argument("--csv", metavar="FILE", help="also write one row per image to FILE")
    _add_device(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_predict)

    x = sub.add_parser("export", help="export a run as ONNX or TorchScript, verified on the test set")
    x.add_argument("checkpoint", metavar="RUN_OR_CHECKPOINT")
    x.add_argument("--format", default="onnx", choices=["onnx", "torchscript"], help="default: onnx")
    x.add_argument("--output", help="file to write (default: model.onnx, model.int8.onnx or model.torchscript.pt in "
                                    "the run directory)")  # fmt: skip
    x.add_argument("--quantize", choices=["none", "int8"], default="none",
                   help="int8: ONNX Runtime's static quantization, calibrated on training images, written to "
                        "model.int8.onnx only if its test accuracy is close enough to fp32's (the drop and the "
                        "drop allowed are printed; onnx only; default: none)")  # fmt: skip
    _add_own_data(x, "the test images it verifies on")
    _add_data_dir(x)
    x.set_defaults(func=cmd_export)

    from lenet.inference.settings import DEFAULTS as SERVE, RUNTIMES, VIEW_CHOICES

    v = sub.add_parser("serve", help="HTTP API and web page for a run", description="Serve a model over HTTP.")
    v.add_argument("checkpoint", metavar="RUN_OR_CHECKPOINT")
    v.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    v.add_argument("--port", type=_port, default=8000, help="default: 8000; 0 picks a free port")
    v.add_argument("--max-batch", type=positive_int, default=SERVE.max_batch,
                   help="most images in one forward pass; a bigger request is split (default: %(default)s)")
    v.add_argument("--max-wait-ms", type=nonnegative_float, default=SERVE.max_wait_ms,
                   help="how long a batch waits to fill (default: %(default)g)")  # fmt: skip
    v.add_argument("--runtime", choices=RUNTIMES, default=SERVE.runtime,
                   help="what runs the model: onnxruntime (checked against PyTorch on the test images first; "
                        "several times faster for small batches on a CPU), onnxruntime-int8 (quantized at start-up "
                        "as lenet export --quantize int8 does, served only if its test accuracy is close enough to "
                        "fp32's), torch, or auto: onnxruntime where installed and the model is on the CPU "
                        "(default: %(default)s)")  # fmt: skip
    v.add_argument("--runtime-threads", type=positive_int, default=SERVE.runtime_threads,
                   help="ONNX Runtime's threads per forward pass (default: %(default)s)")
    v.add_argument("--views", choices=VIEW_CHOICES, default=SERVE.views,
                   help="test-time views averaged per image: the run's recorded ones, the image and its mirror, "
                        "or the image alone; fewer answer sooner, each answer names them (default: %(default)s)")  # fmt: skip
    v.add_argument("--max-request-pixels", type=positive_int, default=SERVE.max_request_pixels, metavar="PIXELS",
                   help="pixels one request's images may hold in all, read from their headers before any is "
                        "decoded; more is refused with 413 (default: %(default)s)")  # fmt: skip
    _add_device(v)
    _add_own_data(v, "the test images it checks ONNX Runtime on and shows at /samples")
    _add_data_dir(v)
    v.set_defaults(func=cmd_serve)

    s = sub.add_parser("summary", help="layer-by-layer output shapes and parameter counts",
                       description="The layers of a trained run's model, or of a registry model (default: the "
                                   "tutorial's lenet).")  # fmt: skip
    s.add_argument("run", metavar="RUN_OR_CHECKPOINT", nargs="?", help="a trained model (default: --model)")
    s.add_argument("--model", choices=list(list_models()), help="a registry model, untrained (default: lenet, the tutorial's)")
    s.add_argument("--batch-size", type=positive_int, default=64)
    s.add_argument("--channels", type=int, choices=(1, 3), help="--model: the input's channels, 1 grey or 3 colour "
                                                                 "(default: the model's own, 1 but lenet_cifar's 3)")  # fmt: skip
    s.add_argument("--size", type=_side, metavar="S", help="--model: the input's side (default: the model's own, 28 "
                                                           "but lenet_cifar's 32)")  # fmt: skip
    s.set_defaults(func=cmd_summary)

    r = sub.add_parser("report", help="plots and a self-contained HTML report of a run")
    r.add_argument("run", metavar="RUN", help="a run directory")
    r.add_argument("--batch-size", type=positive_int, default=Recipe().eval_batch_size, help="images per forward pass")
    r.add_argument("--out", metavar="DIR", help="write report.html and plots/ into DIR, leaving the run as it is "
                                                "(for a run you cannot write to; default: the run directory)")
    _add_device(r)
    _add_own_data(r, "the test images the report shows")
    _add_data_dir(r)
    r.set_defaults(func=cmd_report)

    c = sub.add_parser("compare", help="overlaid learning curves and a side-by-side table of runs")
    c.add_argument("runs", metavar="RUN", nargs="+", help="two or more run directories")
    c.add_argument("--out", default="compare.html", help="the HTML file; the curves go beside it as .png (default: compare.html)")
    c.add_argument("--force", action="store_true", help="overwrite OUT and its .png if they exist (default: refuse)")
    c.set_defaults(func=cmd_compare)

    n = sub.add_parser("runs", help="list the runs in a directory, newest first",
                       description="The runs in DIR (and in its --seeds groups and sweeps), newest first: data set, "
                                   "recipe, epochs, test accuracy, training time and state.")  # fmt: skip
    n.add_argument("directory", metavar="DIR", nargs="?", default="runs", help="default: runs")
    n.add_argument("--json", action="store_true", help="print JSON instead of a table")
    n.set_defaults(func=cmd_runs)

    m = sub.add_parser("models", help="list the models and recipes")
    m.set_defaults(func=cmd_models)

    w = sub.add_parser("sweep", help="many runs over a space of recipes and seeds, on Ray Tune (needs lenet[sweep])",
                       description="Train a space of recipes and seeds on Ray Tune; rank them on a validation split.")
    w.add_argument("space", metavar="SPACE", nargs="?", help="a TOML file: what varies, seeds, budget (see docs/sweeps.md)")
    w.add_argument("--resume", metavar="SWEEP", help="finish the sweep in directory SWEEP (no SPACE then)")
    w.add_argument("--trials", type=positive_int, help="configurations to try (overrides the file)")
    w.add_argument("--seeds", type=positive_int, help="seeds per configuration (overrides the file)")
    w.add_argument("--val-split", type=positive_int, help="held-out training images that judge (default: 5000)")
    w.add_argument("--epochs", type=positive_int, help="epochs of every run (overrides the recipe's)")
    w.add_argument("--cpus-per-trial", type=positive_float, help="CPUs (and threads) of a trial (default: 1)")
    w.add_argument("--gpus-per-trial", type=nonnegative_float, help="fractions share a GPU (default: 0)")
    w.add_argument("--address", help="an existing Ray cluster, HOST:PORT (default: RAY_ADDRESS, else a local Ray)")
    w.add_argument("--local-cpus", type=positive_int, help="CPUs of the local Ray lenet starts (default: every core)")
    w.add_argument("--dataset", type=_dataset_choice, help="the data set of every run, as lenet train takes it (overrides the file's "
                                     "dataset; default: fashion-mnist)")  # fmt: skip
    w.add_argument("--storage", metavar="URI", help="Ray Tune's storage for checkpoints: s3://BUCKET/PREFIX, or a path "
                                                    "every node mounts; needed on a cluster of several machines "
                                                    "(default: the sweep directory)")  # fmt: skip
    w.add_argument("--skip-bad", action="store_const", const=True,
                   help="folder:PATH: every run trains on the readable images, leaving unreadable files out (listed, "
                        "and kept in plan.json's space as skip_bad); the SPACE file's skip_bad = true says the same")  # fmt: skip
    _add_shape_flags(w)
    _add_data_dir(w)
    w.add_argument("--out", default="runs", help="directory that holds the sweep directory (default: runs)")
    w.add_argument("--name", help="sweep directory name (default: the SPACE file's name key, else sweep-Ntrials-YYYYMMDD-HHMMSS)")
    w.set_defaults(func=cmd_sweep)
    return parser


def _recipe_choice(text: str) -> str:
    from lenet.training.recipes import is_recipe_file, list_recipes

    if text in list_recipes() or is_recipe_file(text):
        return text
    raise argparse.ArgumentTypeError(f"{text!r} is neither a recipe ({', '.join(list_recipes())}) nor a .toml file")


def _dataset_choice(text: str) -> str:
    """A data-set name as the registry spells it (Fashion-MNIST is fashion-mnist); a path without folder: or
    csv: is refused with the name it probably meant."""
    from lenet.data.registry import dataset_name

    try:
        return dataset_name(text)
    except LenetError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _add_device(p, default: str | None = "auto") -> None:
    p.add_argument("--device", default=default, type=_device,
                   help="auto, cpu, cuda, cuda:N or mps (default: auto, which is cuda, then mps, then cpu)")  # fmt: skip


def _device(text: str) -> str:
    from lenet.core.device import check_device_name

    try:
        return check_device_name(text)
    except LenetError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _add_field_flags(group, cls) -> None:
    """One flag per field of a config dataclass: its type, help and bounds come from the field."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        flag, kind, meta = "--" + f.name.replace("_", "-"), _optional_of(hints[f.name]), f.metadata
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        shown = meta.get("shown", " ".join(map(str, default)) if isinstance(default, tuple) else default)
        help_text = f"{meta['help']} (default: {shown})"
        if kind is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        elif typing.get_origin(kind) is tuple:
            item = typing.get_args(kind)[0]
            group.add_argument(flag, nargs=2, type=_field_value(f.name, item, meta), metavar=("A", "B"), help=help_text)
        else:
            group.add_argument(flag, type=_field_value(f.name, kind, meta), choices=meta.get("choices"),
                               metavar=None if meta.get("choices") else f.name.upper(), help=help_text)  # fmt: skip


def _optional_of(kind):
    """int | None -> int: a flag that is not given is None anyway."""
    args = [a for a in typing.get_args(kind) if a is not type(None)]
    return args[0] if typing.get_origin(kind) in (typing.Union, types.UnionType) and len(args) == 1 else kind


def _field_value(name: str, kind, meta):
    from lenet.core.values import parse_value

    def parse(text: str):
        try:
            return parse_value(name.replace("_", "-"), text, kind, meta)
        except LenetError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    parse.__name__ = _TYPE_WORDS.get(kind, kind.__name__)  # argparse names the type in its messages
    return parse


def _add_own_data(p, what: str) -> None:
    p.add_argument("--dataset", metavar="folder:PATH|csv:PATH", type=_dataset_choice,
                   help=f"for a model trained on your own data: where that data is ({what}); a checkpoint never "
                        "chooses a path to read, and the data must be what the model was trained on (its SHA-256)")  # fmt: skip


def _add_shape_flags(p) -> None:
    from lenet.data.registry import MAX_IMAGE_SIZE, MIN_IMAGE_SIZE

    p.add_argument("--channels", type=int, choices=(1, 3),
                   help="folder:PATH: read its images in grey (1) or colour (3) (default: colour when a tenth of "
                        "them have colour)")  # fmt: skip
    p.add_argument("--size", type=_side, metavar="S",
                   help=f"folder:PATH: the images' side, {MIN_IMAGE_SIZE}-{MAX_IMAGE_SIZE} (default: 28 grey, 32 colour)")


def _side(text: str) -> int:
    from lenet.data.registry import MAX_IMAGE_SIZE, MIN_IMAGE_SIZE

    side = positive_int(text)
    if not MIN_IMAGE_SIZE <= side <= MAX_IMAGE_SIZE:
        raise argparse.ArgumentTypeError(f"an image side is {MIN_IMAGE_SIZE} to {MAX_IMAGE_SIZE} pixels, not {side}")
    return side


def _add_data_dir(p) -> None:
    p.add_argument("--data-dir", help="an existing directory with the data set's IDX files (looked in first; "
                                      "downloads go here)")  # fmt: skip


def _version() -> str:
    from lenet.core.version import __version__

    return __version__


# --- commands -------------------------------------------------------------------------


# Flags that say what a run is besides its recipe and engine fields: a resumed run keeps its own.
_RUN_FLAGS = ("recipe", "seed", "dataset", "skip_bad", "seeds", "val_split", "eval_every", "deterministic", "out", "name",
              "tensorboard", "start_from", "patience")


def cmd_train(args) -> int:
    from lenet.data.load import load_dataset
    from lenet.training.engine import Engine
    from lenet.training.recipes import Recipe, get_recipe, is_recipe_file, load_recipe_file
    from lenet.runs.directory import default_run_name
    from lenet.training.loop import TrainConfig, check_before_training, train
    from lenet.training.seeds import train_seeds
    from lenet.training.start import check_start, parent_recipe, read_parent

    recipe_fields = _given(args, Recipe)
    engine_fields = _given(args, Engine)
    if args.resume:
        return _resume(args, [*recipe_fields, *engine_fields, *(f for f in _RUN_FLAGS if getattr(args, f) is not None)])
    base = TrainConfig()
    recipe_name = args.recipe or base.recipe_name
    seed, seeds = base.seed if args.seed is None else args.seed, args.seeds or 1
    if args.tensorboard and seeds > 1:
        raise UsageError("--tensorboard logs one run; it cannot go with --seeds")
    # A recipe file's path is its name in config.json; its stem names the run directory. A run started from
    # another goes on with that run's recipe unless told otherwise.
    if args.start_from and not args.recipe:
        recipe, recipe_name = parent_recipe(args.start_from)
    else:
        recipe = load_recipe_file(recipe_name) if is_recipe_file(recipe_name) else get_recipe(recipe_name)
    recipe = replace(recipe, **recipe_fields)
    out = args.out or base.out
    # Named here, not in train(), so that TensorBoard knows the run directory from the first epoch.
    name = args.name
    if name is None and args.tensorboard:
        name = default_run_name(recipe_name, f"seed{seed}")
    config = TrainConfig(
        recipe=recipe, recipe_name=recipe_name, seed=seed, dataset=args.dataset or base.dataset, val_split=args.val_split or 0,
        device=args.device or base.device, deterministic=bool(args.deterministic), data_dir=args.data_dir, out=out,
        name=name, save=args.save_run, progress=args.progress, engine=replace(base.engine, **engine_fields),
        eval_every=base.eval_every if args.eval_every is None else args.eval_every, report=args.report is not False,
        skip_bad=bool(args.skip_bad), start_from=args.start_from, patience=args.patience or 0, channels=args.channels,
        size=args.size,
    )  # fmt: skip
    # Loaded once: training, then the report.
    data = load_dataset(config.dataset, args.data_dir, skip_bad=config.skip_bad, channels=config.channels,
                        size=config.size)  # fmt: skip
    check_before_training(config, data)  # what train() would refuse, refused before the header line
    start = check_start(read_parent(args.start_from), recipe, data.spec) if args.start_from else None
    _print_skipped(data)
    board = _tensorboard(args, out, name) if args.tensorboard else None
    print(f"{data.spec.name} ({_shape_words(data.spec)}), recipe {recipe_name}: model {recipe.model}, {recipe.optimizer} lr {recipe.lr}, batch {recipe.batch_size}, "
          f"{plural(recipe.epochs, 'epoch')}, seed {seed}" + (f" (+{seeds - 1} more)" if seeds > 1 else "")
          + (f", distilled from {recipe.teacher}" if recipe.teacher else ""),
          flush=True)  # fmt: skip
    if start is not None:
        print(start, flush=True)

    def on_epoch(row) -> None:
        print(_epoch_line(row, recipe.epochs), flush=True)
        if board is not None:
            board.log_epoch(row)

    def finish(result, prefix: str = "") -> None:
        _print_result(result, prefix)
        if result.run_dir is not None and config.report:
            _report_after_training(result.run_dir, data, config, board, len(result.history))

    if seeds == 1:
        finish(train(config, data=data, on_epoch=on_epoch, on_warning=_print_warning))
    else:
        _, stats = train_seeds(config, seeds, data=data, on_run=lambda seed, r: finish(r, f"seed {seed}: "),
                               on_epoch=on_epoch, on_warning=_print_warning)  # fmt: skip
        print(f"{plural(stats['runs'], 'seed')}: test accuracy mean {stats['mean']:.2%}, std {stats['std']:.2%}, "
              f"min {stats['min']:.2%}, max {stats['max']:.2%}; {stats['stuck']} stuck at chance")  # fmt: skip
    if board is not None:
        board.close()
    return 0


def _shape_words(spec) -> str:
    """'grey 28x28' or 'colour 32x32': how a data set's images reach the model."""
    return f"{'colour' if spec.channels == 3 else 'grey'} {spec.image_size}x{spec.image_size}"


def _print_skipped(data) -> None:
    if data.skipped:
        shown = "; ".join(data.skipped[:10]) + (f"; and {len(data.skipped) - 10} more" if len(data.skipped) > 10 else "")
        _print_warning(f"--skip-bad left out {plural(len(data.skipped), 'unreadable file')}: {shown}")


def _given(args, cls) -> dict:
    """The fields of a config dataclass that were given as flags, as values for dataclasses.replace."""
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if getattr(args, f.name) is not None}
    return {name: tuple(value) if isinstance(value, list) else value for name, value in given.items()}


def _print_warning(text: str) -> None:
    print(f"warning: {text}", file=sys.stderr, flush=True)


def _resume(args, changing: list[str]) -> int:
    from lenet.training.loop import train
    from lenet.training.resume import prepare_resume

    # --dataset and --teacher name where a run's own data and teacher are (a run's files never choose a path).
    changing = [flag for flag in changing if flag not in ("dataset", "teacher")]
    if changing or not args.save_run:
        flags = ", ".join("--" + f.replace("_", "-") for f in changing) or "--save-run"
        raise UsageError(f"--resume continues a run as it was started; drop {flags}")
    overrides = {"device": args.device} if args.device else {}  # else the device the run was started on
    resume = prepare_resume(args.resume, args.dataset, args.data_dir, args.teacher, args.report, progress=args.progress,
                            **overrides)  # fmt: skip
    config = resume.config
    if resume.finished is not None:
        return _finished(args.resume, resume.finished, config, rebuild_report=resume.report)
    print(f"resuming {args.resume}", flush=True)
    _print_skipped(resume.data)
    epochs = config.recipe.epochs
    on_epoch = lambda row: print(_epoch_line(row, epochs), flush=True)  # noqa: E731
    result = train(config, data=resume.data, resume=args.resume, on_epoch=on_epoch, on_warning=_print_warning)
    _print_result(result)
    if resume.report:
        _report_after_training(result.run_dir, resume.data, config, None, epochs)
    return 0


def _finished(run, summary, config, rebuild_report: bool) -> int:
    """A resume of a finished run: it says so and changes nothing, unless --report asks for the report again."""
    print(f"{run} is finished ({summary.epochs} of {config.recipe.epochs} epochs, test accuracy "
          f"{summary.test.accuracy:.2%}); nothing to resume" + ("" if rebuild_report else f" (lenet report {run} rebuilds its report)"),
          flush=True)  # fmt: skip
    if rebuild_report:
        _report_after_training(run, None, config, None, config.recipe.epochs)
    return 0


def _print_result(result, prefix: str = "") -> None:
    final = result.final
    print(f"{prefix}test accuracy {final.accuracy:.2%} ({final.correct}/{final.total}), test loss {final.loss:.4f}, "
          f"{result.train_seconds:.1f} s of training", flush=True)  # fmt: skip
    if result.val is not None:
        print(f"{prefix}val accuracy {result.val.accuracy:.2%} ({result.val.correct}/{result.val.total})", flush=True)
    if result.run_dir is not None:
        print(f"{prefix}run saved to {result.run_dir}", flush=True)


def _tensorboard(args, out: str, name: str):
    from pathlib import Path

    from lenet.insight.tensorboard_log import TensorBoardLog

    if not args.save_run:
        raise UsageError("--tensorboard logs into the run directory; it cannot go with --no-save-run")
    return TensorBoardLog(Path(out) / name)


def _report_after_training(run_dir, data, config, board, step: int) -> None:
    from lenet.insight.report import PlotsUnavailable, write_report

    try:
        report = write_report(run_dir, data, device=config.device, progress=config.progress)
    except PlotsUnavailable as e:
        print(f"no report: {e}")  # training worked; the plots are an extra
        return
    print(f"report written to {report.path}", flush=True)
    if board is not None:
        board.log_images(report.figures, step)


def _epoch_line(row, epochs: int) -> str:
    figures = (f"{row.eval_split} loss {row.eval_loss:.4f} acc {row.eval_accuracy:.2%}" if row.eval_accuracy is not None
               else f"{row.eval_split} not evaluated (--eval-every)")  # fmt: skip
    return (
        f"epoch {row.epoch:>2}/{epochs}  train loss {row.train_loss:.4f} acc {row.train_accuracy:.2%}  "
        f"{figures}  {row.seconds:.1f} s  {row.images_per_s:,.0f} img/s"
    )


def cmd_eval(args) -> int:
    from lenet.runs.checkpoint import load
    from lenet.data.load import load_model_data
    from lenet.data.registry import shown_name
    from lenet.core.device import resolve_device
    from lenet.core.stats import interval_text, is_small, small_test_warning
    from lenet.insight.analysis import check_mistakes_path, misclassified, write_mistakes_csv
    from lenet.models.views import classes_of
    from lenet.training.metrics import predict_logits, score
    from lenet.core.progress import stage

    if args.mistakes:
        check_mistakes_path(args.mistakes)  # before the model and the data: a wrong name fails at once
    device = resolve_device(args.device)
    with stage(f"loading {args.checkpoint}"):
        model = load(args.checkpoint, device)
    name = args.dataset or model.data.name  # a model is evaluated on its own data set unless told otherwise
    with stage(f"loading {args.dataset or shown_name(model.data.name)}"):
        data = load_model_data(model.data, args.dataset, args.data_dir, device)
    with stage(f"evaluating {len(data.test_labels):,} test images ({model.views.describe()})"):
        logits = predict_logits(model, data.test_images, args.batch_size, progress="evaluating")
    result = score(logits, data.test_labels, classes_of(model))
    if warning := small_test_warning(result.correct, result.total):
        _print_warning(warning)
    mistakes = None
    if args.mistakes:
        mistakes = misclassified(logits, data.test_labels, data.test_sources, result.classes)
        write_mistakes_csv(args.mistakes, mistakes)
    if args.json:
        record = {"checkpoint": str(args.checkpoint), "data_set": name, **result.to_dict(), **result.honest_figures()}
        if mistakes is not None:
            record["mistakes_csv"] = str(args.mistakes)
        print(json.dumps(rounded(record), indent=2))
        return 0
    if data.spec.name != model.data.name:  # another data set than the model's: say so, next to the figure
        name = f"{name} (not {model.data.name}, which the model was trained on)"
    interval = f", {interval_text(result.correct, result.total)}" if is_small(result.total) else ""
    print(f"{name}: test accuracy {result.accuracy:.2%} ({result.correct}/{result.total}{interval}), "
          f"test loss {result.loss:.4f}\n")
    labels = [f"{i} {c}" for i, c in enumerate(result.classes)]  # the column headers are these numbers
    width = max(map(len, labels))
    print(f"{'class':<{width}}  accuracy (recall)  precision")
    for label, recall, precision in zip(labels, result.per_class_accuracy, result.per_class_precision):
        print(f"{label:<{width}}  {recall:17.2%}  {precision:9.2%}")
    print("\nconfusion matrix (rows: true class, columns: predicted class, by number)")
    print(" " * width + "  " + " ".join(f"{i:>5}" for i in range(len(labels))))
    for label, row in zip(labels, result.confusion.tolist()):
        print(f"{label:<{width}}  " + " ".join(f"{v:>5}" for v in row))
    if mistakes is not None:
        print(f"\n{plural(len(mistakes), 'misclassified test image')} written to {args.mistakes}")
    return 0


def cmd_report(args) -> int:
    from lenet.core.stats import small_test_warning
    from lenet.insight.report import write_report
    from lenet.runs.directory import PLOTS_DIR

    report = write_report(args.run, data_dir=args.data_dir, device=args.device, batch_size=args.batch_size, progress=True,
                          out=args.out, dataset=args.dataset)  # fmt: skip
    result = report.evaluation
    print(f"test accuracy {result.accuracy:.2%} ({result.correct}/{result.total}), test loss {result.loss:.4f}")
    if warning := small_test_warning(result.correct, result.total):
        _print_warning(warning)
    print(f"plots saved to {report.path.parent / PLOTS_DIR}")
    print(f"report written to {report.path}")
    return 0


def cmd_compare(args) -> int:
    from lenet.insight.report import compare, comparison_text

    result = compare(args.runs, args.out, force=args.force)
    print(comparison_text(result.rows))
    if result.warning:
        _print_warning(result.warning)
    replaced = f", replacing the earlier {' and '.join(p.name for p in result.replaced)}" if result.replaced else ""
    print(f"\ncomparison written to {result.html} (curves: {result.png}){replaced}")
    return 0


def cmd_preview(args) -> int:
    from lenet.insight.preview import write_preview

    preview = write_preview(args.dataset, args.out, args.per_class, args.data_dir, args.skip_bad, args.channels, args.size)
    classes = plural(preview.classes, "class", "classes")
    print(f"{plural(preview.images, 'image')} of {classes} written to {preview.path}")
    if preview.short:
        _print_warning(f"fewer than {args.per_class} images in {', '.join(preview.short[:10])}"
                       + (f" and {len(preview.short) - 10} more" if len(preview.short) > 10 else ""))  # fmt: skip
    return 0


def cmd_predict(args) -> int:
    from lenet.runs.checkpoint import load
    from lenet.core.device import resolve_device
    from lenet.data.images import load_images
    from lenet.inference.predict import check_top_k, prediction_record, predict, write_predictions_csv
    from lenet.models.views import classes_of, input_shape

    model = load(args.checkpoint, resolve_device(args.device))
    top_k = check_top_k(args.top_k, len(classes_of(model)))
    channels, side, _ = input_shape(model)
    loaded = load_images(args.images, args.skip_bad, channels, side)
    predictions = predict(model, loaded.images, top_k)
    for line in (loaded.skipped_summary(), loaded.small_warning()):
        if line:
            print(_one_line(line), file=sys.stderr)
    if args.csv:
        write_predictions_csv(args.csv, loaded.paths, predictions)
    if args.json:  # the document POST /predict answers, with the same keys
        records = [prediction_record(path, p) for path, p in zip(loaded.paths, predictions)]
        print(json.dumps({"predictions": records, "views": model.views.describe()}, indent=2, ensure_ascii=False))
        return 0
    for path, p in zip(loaded.paths, predictions):
        print(f"{path}: " + ", ".join(f"{name} {prob:.1%}" for name, prob in p.top))
    return 0


def cmd_export(args) -> int:
    from lenet.inference.export import export

    result = export(args.checkpoint, args.format, args.output, args.data_dir, progress=True, dataset=args.dataset,
                    quantize=args.quantize)  # fmt: skip
    v = result.verification
    if result.quantization != "none":
        print(f"verified with {v.runtime}: {v.describe()}")
    else:
        print(f"verified with {v.runtime} on {v.images:,} test images: argmax identical on {v.argmax_agree:,}/{v.images:,}, "
              f"max |logit difference| {v.max_abs_logit_diff:.2e} (allowed {v.tolerance:g})")  # fmt: skip
    where = f"record in {result.record}" if result.record != result.sidecar else "the run directory is left as it was"
    print(f"wrote {result.path} ({result.bytes:,} bytes), preprocessing and record in {result.sidecar}; {where}")
    return 0


def cmd_serve(args) -> int:
    from lenet.inference.serve import serve
    from lenet.inference.settings import ServeSettings

    settings = ServeSettings(max_batch=args.max_batch, max_wait_ms=args.max_wait_ms, runtime=args.runtime,
                             runtime_threads=args.runtime_threads, max_request_pixels=args.max_request_pixels,
                             views=args.views)  # fmt: skip
    return serve(args.checkpoint, args.host, args.port, args.device, args.data_dir, settings, dataset=args.dataset)


def cmd_summary(args) -> int:
    from lenet.runs.checkpoint import load
    from lenet.models.lenet import LeNet, count_parameters, made_for_config, summarize

    if args.run and (args.model or args.channels or args.size):
        raise UsageError("give a RUN, or --model (with --channels and --size), not both: a run's model has its own input")
    if args.run:
        trained = load(args.run)
        model, what = trained.net, f"{args.run} ({trained.data.name}; predicts with {trained.views.describe()})"
    else:
        name = args.model or "lenet"
        shape = {k: v for k, v in (("in_channels", args.channels), ("image_size", args.size)) if v is not None}
        model, what = LeNet(made_for_config(name, **shape)), args.model or "lenet (the tutorial's model)"
    rows = summarize(model, args.batch_size)
    config = model.config
    print(f"{what}: input [{args.batch_size}, {config.in_channels}, {config.image_size}, {config.image_size}]")
    print(f"{'layer':<10} {'type':<12} {'output shape':<20} {'parameters':>10}")
    conv_out = [r for r in rows if r.name.startswith("conv.")][-1]
    for row in rows:
        print(f"{row.name:<10} {row.kind:<12} {str(list(row.output_shape)):<20} {row.parameters:>10,}")
        if row is conv_out:  # the reshape the tutorial does in forward(): [batch, 16, 4, 4] -> [batch, 256]
            flat = [args.batch_size, math.prod(row.output_shape[1:])]
            print(f"{'(flatten)':<10} {'':<12} {str(flat):<20} {0:>10}")
    print(f"total parameters: {count_parameters(model):,}")
    return 0


def cmd_runs(args) -> int:
    from lenet.runs.listing import list_runs

    listings = list_runs(args.directory)
    if args.json:
        print(json.dumps(rounded([listing.to_dict() for listing in listings]), indent=2, ensure_ascii=False))
        return 0
    if not listings:
        print(f"no runs in {args.directory}")
        return 0
    rows = [("run", "data set", "recipe", "epochs", "test accuracy", "training", "state")]
    rows += [_run_row(listing) for listing in listings]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + _one_line(row[-1]))
    return 0


def _run_row(listing) -> tuple[str, ...]:
    if listing.state == "damaged":
        return (listing.name, "", "", "", "", "", f"damaged: {listing.reason}")
    epochs = f"{listing.epochs_done}/{listing.epochs_planned if listing.epochs_planned is not None else '?'}"
    accuracy = ""
    if listing.test_accuracy is not None:
        accuracy = f"{listing.test_accuracy:.2%}"
        if listing.test_interval is not None:  # a small test set: its accuracy is a range
            low, high = listing.test_interval
            accuracy += f" (95% {low:.1%}-{high:.1%} of {listing.test_total:,})"
    seconds = f"{listing.train_seconds:.1f} s" if listing.train_seconds is not None else ""
    state = f"failed: {listing.reason}" if listing.state == "failed" else listing.state
    return (listing.name, listing.dataset or "", listing.recipe or "", epochs, accuracy, seconds, state)


def cmd_models(args) -> int:
    from lenet.data.registry import USER_DATA, list_datasets
    from lenet.models.lenet import list_models
    from lenet.training.recipes import list_recipes

    tables = {"models": list_models(), "recipes": list_recipes(), "data sets": {**list_datasets(), **USER_DATA}}
    width = max(len(name) for table in tables.values() for name in table)
    for heading, table in tables.items():
        print(f"{heading}:")
        for name, text in table.items():
            print(f"  {name:<{width}} {text}")
    return 0


def cmd_sweep(args) -> int:
    from lenet.sweep.driver import run_sweep
    from lenet.sweep.space import Options

    if (args.space is None) == (args.resume is None):
        raise UsageError("give a SPACE file, or --resume SWEEP to finish a sweep")
    # On --resume, --dataset names where the sweep's own data is (a sweep's files never choose a path to read).
    planned = ("trials", "seeds", "val_split", "epochs", "name", "cpus_per_trial", "gpus_per_trial", "skip_bad",
               "channels", "size", *(() if args.resume else ("dataset",)))  # fmt: skip
    changed = [f"--{k.replace('_', '-')}" for k in planned if getattr(args, k) is not None]
    if args.resume and changed:
        raise UsageError(f"--resume finishes a sweep as it was planned; drop {changed[0]}")
    resources = {k: v for k in ("cpus_per_trial", "gpus_per_trial") if (v := getattr(args, k)) is not None}
    options = Options(trials=args.trials, seeds=args.seeds, val_split=args.val_split, epochs=args.epochs,
                      **resources, address=args.address,
                      local_cpus=args.local_cpus, out=args.out, name=args.name, data_dir=args.data_dir,
                      storage=args.storage, dataset=args.dataset, skip_bad=args.skip_bad, channels=args.channels,
                      size=args.size)  # fmt: skip
    run_sweep(args.space, options, resume=args.resume, on_line=lambda line: print(line, flush=True))
    return 0


def _one_line(message: str) -> str:
    # A message may quote untrusted text (a file name, a tensor name) that holds a line break.
    return message.replace("\r", "\\r").replace("\n", "\\n")


# Commands that run the model over many images keep the memory each pass frees for the next
# (engine.keep_freed_memory: `lenet eval` of the default model took 13-15 s instead of 19-21 s);
# `lenet train` follows its --keep-memory flag instead.
_RUN_THE_MODEL = ("eval", "report", "predict", "export", "serve")


def _command_parser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[command]


def _unrecognized(unknown: list[str], command: argparse.ArgumentParser) -> str:
    """argparse's "unrecognized arguments", with the command's nearest flag for each unknown one
    (--batchsize: did you mean --batch-size?)."""
    flags = [f for f in command._option_string_actions if f.startswith("--")]
    hints = {}
    for given in (a.split("=", 1)[0] for a in unknown if a.startswith("-")):
        near = difflib.get_close_matches(given if given.startswith("--") else "-" + given, flags, n=1)
        if near:
            hints[given] = f"did you mean {near[0]}?"
    if len(hints) > 1:
        hints = {given: f"{given}: {hint}" for given, hint in hints.items()}
    return f"unrecognized arguments: {' '.join(unknown)}" + (f" ({'; '.join(hints.values())})" if hints else "")


def _flag_conflict(args) -> str | None:
    """Flags that parse one by one but not together."""
    if args.command == "export" and args.quantize != "none" and args.format != "onnx":
        return f"--quantize {args.quantize} needs --format onnx (ONNX Runtime quantizes); a {args.format} export is fp32"
    return None


def main(argv: list[str] | None = None) -> int:
    from lenet.data.images import quiet_pillow_warnings

    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # argparse's own error, with the flag probably meant
        command = _command_parser(parser, args.command)
        command.error(_unrecognized(unknown, command))
    if problem := _flag_conflict(args):  # a usage error, like argparse's own: one line, exit 2
        parser.exit(2, f"lenet {args.command}: error: {problem} (see lenet {args.command} --help)\n")
    quiet_pillow_warnings()  # here, once, on the main thread: never from the threads that decode
    if args.command in _RUN_THE_MODEL:
        from lenet.training.engine import keep_freed_memory

        keep_freed_memory()
    try:
        return args.func(args)
    except Interrupted as e:
        print(f"lenet {args.command}: {e}", file=sys.stderr)
        return 130
    except LenetError as e:
        print(_one_line(f"lenet {args.command}: error: {e}"), file=sys.stderr)
        return 2 if isinstance(e, UsageError) else 1  # 2: a usage error, as argparse's own
    except KeyboardInterrupt:
        print(f"lenet {args.command}: interrupted", file=sys.stderr)
        return 130
    except OSError as e:
        message = f"lenet {args.command}: error: {e.strerror or e}: {e.filename or ''}".rstrip(": ")
        print(_one_line(message), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
