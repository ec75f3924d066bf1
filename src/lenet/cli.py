"""The `lenet` command: parse, call the library, print. No logic of its own."""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import replace
from typing import NoReturn

from .errors import Interrupted, LenetError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, not argparse's usage block: what is wrong and where to look.
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _number(kind, minimum, inclusive=True):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {kind.__name__}") from None
        if value < minimum or (not inclusive and value == minimum) or value != value:
            bound = f">= {minimum}" if inclusive else f"> {minimum}"
            raise argparse.ArgumentTypeError(f"{text} must be {bound}")
        return value

    return parse


positive_int, positive_float, nonnegative_float = _number(int, 1), _number(float, 0, False), _number(float, 0)


def _port(text: str) -> int:
    port = _number(int, 0)(text)
    if port > 65535:
        raise argparse.ArgumentTypeError(f"{text} is not a port (0-65535)")
    return port


def build_parser() -> argparse.ArgumentParser:
    from .device import DEVICES
    from .engine import PRECISIONS, Engine
    from .models import list_models
    from .recipes import OPTIMIZERS, SCHEDULES, Recipe, list_recipes

    parser = _Parser(prog="lenet", description="LeNet on Fashion-MNIST: train, evaluate, inspect, predict.")
    parser.add_argument("--version", action="version", version=f"lenet {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    t = sub.add_parser("train", help="train a model and save the run", description="Train LeNet on Fashion-MNIST.")
    t.add_argument("--recipe", default="default", choices=list(list_recipes()), help="named hyperparameter set (default: default)")
    t.add_argument("--model", choices=list(list_models()), help="model from the registry (overrides the recipe's)")
    t.add_argument("--epochs", type=positive_int)
    t.add_argument("--batch-size", type=positive_int)
    t.add_argument("--lr", type=positive_float, help="learning rate (the peak one for --schedule onecycle)")
    t.add_argument("--optimizer", choices=OPTIMIZERS)
    t.add_argument("--weight-decay", type=nonnegative_float)
    t.add_argument("--schedule", choices=SCHEDULES)
    t.add_argument("--label-smoothing", type=nonnegative_float)
    t.add_argument("--shift", type=int, help="random translations by up to this many pixels (0 = off)")
    t.add_argument("--flip", action=argparse.BooleanOptionalAction, default=None, help="random horizontal flips")
    t.add_argument("--test-flip", action=argparse.BooleanOptionalAction, default=None,
                   help="average each test image's prediction with its mirror's")  # fmt: skip
    t.add_argument("--test-shift", type=int,
                   help="also average over the test image moved this many pixels up, down, left and right (0 = off)")
    t.add_argument("--seed", type=int, default=0, help="seeds weights, shuffling and augmentation (default: 0)")
    t.add_argument("--seeds", type=positive_int, default=1, help="train this many seeds from --seed on; report statistics")
    t.add_argument("--val-split", type=positive_int, help="hold out this many training images and judge every epoch on them")
    t.add_argument("--deterministic", action="store_true", help="deterministic CUDA kernels (the CPU always is)")
    t.add_argument("--precision", choices=PRECISIONS, default=Engine.precision, help="bf16 autocasts the forward pass")
    t.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=Engine.channels_last,
                   help="NHWC convolutions")
    t.add_argument("--fused", action=argparse.BooleanOptionalAction, default=Engine.fused, help="fused optimizer kernel")
    t.add_argument("--pool-first", action=argparse.BooleanOptionalAction, default=Engine.pool_first,
                   help="while training, max-pool before the activation (same result, less work)")
    t.add_argument("--compile", action="store_true", help="torch.compile the model (slow start)")
    t.add_argument("--threads", type=positive_int, help="CPU threads (default: PyTorch's, one per core)")
    t.add_argument("--resume", metavar="RUN", help="continue RUN after its last completed epoch (its own config)")
    _add_device(t, DEVICES)
    _add_data_dir(t)
    t.add_argument("--out", default="runs", help="directory that holds run directories (default: runs)")
    t.add_argument("--name", help="run directory name (default: RECIPE-seedN-TIMESTAMP); never overwritten")
    t.add_argument("--save-model", action=argparse.BooleanOptionalAction, default=True, help="write the run directory")
    t.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True, help="progress bar on a terminal")
    t.add_argument("--report", action=argparse.BooleanOptionalAction, default=True,
                   help="after training, save plots and RUN/report.html (needs matplotlib)")  # fmt: skip
    t.add_argument("--tensorboard", action="store_true",
                   help="log scalars per epoch and the report's plots to RUN/tensorboard (needs tensorboard)")  # fmt: skip
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("eval", help="evaluate a run or checkpoint on the test set")
    e.add_argument("checkpoint", metavar="RUN_OR_CHECKPOINT")
    e.add_argument("--batch-size", type=positive_int, default=Recipe().eval_batch_size, help="images per forward pass")
    _add_device(e, DEVICES)
    _add_data_dir(e)
    e.add_argument("--json", action="store_true", help="print JSON instead of tables")
    e.set_defaults(func=cmd_eval)

    p = sub.add_parser("predict", help="classify your own images")
    p.add_argument("checkpoint", metavar="RUN_OR_CHECKPOINT")
    p.add_argument("images", metavar="IMAGE", nargs="+", help="PNG or JPEG files, any size and mode")
    p.add_argument("--top-k", type=positive_int, default=3)
    _add_device(p, DEVICES)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_predict)

    x = sub.add_parser("export", help="export a run as ONNX or TorchScript, verified on the test set")
    x.add_argument("checkpoint", metavar="RUN_OR_CHECKPOINT")
    x.add_argument("--format", default="onnx", choices=["onnx", "torchscript"], help="default: onnx")
    x.add_argument("--output", help="file to write (default: model.onnx or model.torchscript.pt in the run directory)")
    _add_data_dir(x)
    x.set_defaults(func=cmd_export)

    from .serve import DEFAULTS as SERVE

    v = sub.add_parser("serve", help="HTTP API and web page for a run", description="Serve a model over HTTP.")
    v.add_argument("checkpoint", metavar="RUN_OR_CHECKPOINT")
    v.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    v.add_argument("--port", type=_port, default=8000, help="default: 8000; 0 picks a free port")
    v.add_argument("--max-batch", type=positive_int, default=SERVE.max_batch,
                   help="most images in one forward pass; a bigger request is split (default: %(default)s)")
    v.add_argument("--max-wait-ms", type=nonnegative_float, default=SERVE.max_wait_ms,
                   help="how long a batch waits to fill (default: %(default)g)")  # fmt: skip
    _add_device(v, DEVICES)
    _add_data_dir(v)
    v.set_defaults(func=cmd_serve)

    s = sub.add_parser("summary", help="layer-by-layer output shapes and parameter counts")
    s.add_argument("--model", default="lenet", choices=list(list_models()))
    s.add_argument("--batch-size", type=positive_int, default=64)
    s.set_defaults(func=cmd_summary)

    r = sub.add_parser("report", help="plots and a self-contained HTML report of a run")
    r.add_argument("run", metavar="RUN", help="a run directory")
    r.add_argument("--batch-size", type=positive_int, default=Recipe().eval_batch_size, help="images per forward pass")
    _add_device(r, DEVICES)
    _add_data_dir(r)
    r.set_defaults(func=cmd_report)

    c = sub.add_parser("compare", help="overlaid learning curves and a side-by-side table of runs")
    c.add_argument("runs", metavar="RUN", nargs="+", help="two or more run directories")
    c.add_argument("--out", default="compare.html", help="the HTML file; the curves go beside it as .png (default: compare.html)")
    c.set_defaults(func=cmd_compare)

    m = sub.add_parser("models", help="list the models and recipes")
    m.set_defaults(func=cmd_models)
    return parser


def _add_device(p, devices) -> None:
    p.add_argument("--device", default="auto", choices=devices, help="default: auto (cuda, then mps, then cpu)")


def _add_data_dir(p) -> None:
    p.add_argument("--data-dir", help="directory with the Fashion-MNIST files (looked in first; downloads go here)")


def _version() -> str:
    from . import __version__

    return __version__


# --- commands -------------------------------------------------------------------------


def cmd_train(args) -> int:
    from .data import load_fashion_mnist
    from .recipes import get_recipe
    from .runs import default_run_name
    from .train import TrainConfig, train, train_seeds

    fields = ("model", "epochs", "batch_size", "lr", "optimizer", "weight_decay", "schedule", "label_smoothing",
              "shift", "flip", "test_flip", "test_shift")  # fmt: skip
    overrides = {key: value for key in fields if (value := getattr(args, key)) is not None}
    if args.resume:
        return _resume(args, overrides)
    if args.tensorboard and args.seeds > 1:
        raise LenetError("--tensorboard logs one run; it cannot go with --seeds")
    recipe = replace(get_recipe(args.recipe), **overrides)
    # Named here, not in train(), so that TensorBoard knows the run directory from the first epoch.
    name = args.name or (default_run_name(args.recipe, f"seed{args.seed}", args.out) if args.seeds == 1 else None)
    config = TrainConfig(
        recipe=recipe, recipe_name=args.recipe, seed=args.seed, val_split=args.val_split or 0, device=args.device,
        deterministic=args.deterministic, data_dir=args.data_dir, out=args.out, name=name,
        save=args.save_model, progress=args.progress, engine=_engine(args),
    )  # fmt: skip
    board = _tensorboard(args, name) if args.tensorboard else None
    data = load_fashion_mnist(args.data_dir)  # loaded once, for training and then the report
    print(f"recipe {args.recipe}: model {recipe.model}, {recipe.optimizer} lr {recipe.lr}, batch {recipe.batch_size}, "
          f"{recipe.epochs} epochs, seed {args.seed}" + (f" (+{args.seeds - 1} more)" if args.seeds > 1 else ""),
          flush=True)  # fmt: skip

    def on_epoch(row) -> None:
        print(_epoch_line(row, recipe.epochs), flush=True)
        if board is not None:
            board.log_epoch(row)

    def on_warning(text: str) -> None:
        print(f"warning: {text}", file=sys.stderr, flush=True)

    def finish(result, prefix: str = "") -> None:
        _print_result(result, prefix)
        if result.run_dir is not None and args.report:
            _report_after_training(result.run_dir, data, args.device, board, len(result.history))

    if args.seeds == 1:
        finish(train(config, data=data, on_epoch=on_epoch, on_warning=on_warning))
    else:
        _, stats = train_seeds(config, args.seeds, data=data, on_run=lambda seed, r: finish(r, f"seed {seed}: "),
                               on_epoch=on_epoch, on_warning=on_warning)  # fmt: skip
        print(f"{stats['runs']} seeds: test accuracy mean {stats['mean']:.2%}, std {stats['std']:.2%}, "
              f"min {stats['min']:.2%}, max {stats['max']:.2%}; {stats['stuck']} stuck at chance")  # fmt: skip
    if board is not None:
        board.close()
    return 0


def _engine(args):
    from .engine import Engine

    return Engine(channels_last=args.channels_last, fused=args.fused, pool_first=args.pool_first,
                  precision=args.precision, compile=args.compile, threads=args.threads)  # fmt: skip


def _resume(args, overrides) -> int:
    from .data import load_fashion_mnist
    from .train import resume_config, train

    if overrides or args.seeds > 1 or args.val_split or args.name or args.tensorboard:
        raise LenetError("--resume continues a run with its own recipe; drop the other training flags")
    config = resume_config(args.resume, device=args.device, data_dir=args.data_dir, progress=args.progress)
    print(f"resuming {args.resume}", flush=True)
    epochs = config.recipe.epochs
    data = load_fashion_mnist(args.data_dir)  # loaded once, for training and then the report
    on_epoch = lambda row: print(_epoch_line(row, epochs), flush=True)  # noqa: E731
    result = train(config, data=data, resume=args.resume, on_epoch=on_epoch)
    _print_result(result)
    if args.report:
        _report_after_training(result.run_dir, data, args.device, None, epochs)
    return 0


def _print_result(result, prefix: str = "") -> None:
    final = result.final
    print(f"{prefix}test accuracy {final.accuracy:.2%} ({final.correct}/{final.total}), test loss {final.loss:.4f}, "
          f"{result.train_seconds:.1f} s of training", flush=True)  # fmt: skip
    if result.val is not None:
        print(f"{prefix}val accuracy {result.val.accuracy:.2%} ({result.val.correct}/{result.val.total})", flush=True)
    if result.run_dir is not None:
        print(f"{prefix}run saved to {result.run_dir}", flush=True)


def _tensorboard(args, name: str):
    from pathlib import Path

    from .tensorboard_log import TensorBoardLog

    if not args.save_model:
        raise LenetError("--tensorboard logs into the run directory; it cannot go with --no-save-model")
    return TensorBoardLog(Path(args.out) / name)


def _report_after_training(run_dir, data, device: str, board, step: int) -> None:
    from .report import PlotsUnavailable, write_report

    try:
        report = write_report(run_dir, data, device=device)
    except PlotsUnavailable as e:
        print(f"no report: {e}")  # training worked; the plots are an extra
        return
    print(f"report written to {report.path}", flush=True)
    if board is not None:
        board.log_images(report.figures, step)


def _epoch_line(row, epochs: int) -> str:
    return (
        f"epoch {row.epoch:>2}/{epochs}  train loss {row.train_loss:.4f} acc {row.train_accuracy:.2%}  "
        f"{row.eval_split} loss {row.eval_loss:.4f} acc {row.eval_accuracy:.2%}  "
        f"{row.seconds:.1f} s  {row.images_per_s:,.0f} img/s"
    )


def cmd_eval(args) -> int:
    from .checkpoint import load
    from .data import CLASSES, load_fashion_mnist
    from .device import resolve_device
    from .metrics import evaluate

    device = resolve_device(args.device)
    model = load(args.checkpoint, device)
    data = load_fashion_mnist(args.data_dir, device)
    result = evaluate(model, data.test_images, data.test_labels, args.batch_size)
    if args.json:
        print(json.dumps({"checkpoint": str(args.checkpoint), **result.to_dict()}, indent=2))
        return 0
    print(f"test accuracy {result.accuracy:.2%} ({result.correct}/{result.total}), test loss {result.loss:.4f}\n")
    width = max(map(len, CLASSES))
    print(f"{'class':<{width}}  accuracy")
    for name, acc in zip(CLASSES, result.per_class_accuracy):
        print(f"{name:<{width}}  {acc:8.2%}")
    print("\nconfusion matrix (rows: true class, columns: predicted)")
    print(" " * width + "  " + " ".join(f"{i:>5}" for i in range(len(CLASSES))))
    for i, (name, row) in enumerate(zip(CLASSES, result.confusion.tolist())):
        print(f"{name:<{width}}  " + " ".join(f"{v:>5}" for v in row) + f"   {i}")
    return 0


def cmd_report(args) -> int:
    from .report import write_report
    from .runs import PLOTS_DIR

    report = write_report(args.run, data_dir=args.data_dir, device=args.device, batch_size=args.batch_size)
    result = report.evaluation
    print(f"test accuracy {result.accuracy:.2%} ({result.correct}/{result.total}), test loss {result.loss:.4f}")
    print(f"plots saved to {report.path.parent / PLOTS_DIR}")
    print(f"report written to {report.path}")
    return 0


def cmd_compare(args) -> int:
    from .report import compare, comparison_text

    result = compare(args.runs, args.out)
    print(comparison_text(result.rows))
    print(f"\ncomparison written to {result.html} (curves: {result.png})")
    return 0


def cmd_predict(args) -> int:
    import torch

    from .checkpoint import load
    from .device import resolve_device
    from .inference import load_image, predict

    model = load(args.checkpoint, resolve_device(args.device))
    images = torch.stack([load_image(path) for path in args.images])
    predictions = predict(model, images, args.top_k)
    if args.json:
        print(json.dumps([{"image": path, **p.to_dict()} for path, p in zip(args.images, predictions)], indent=2))
        return 0
    for path, p in zip(args.images, predictions):
        print(f"{path}: " + ", ".join(f"{name} {prob:.1%}" for name, prob in p.top))
    return 0


def cmd_export(args) -> int:
    from .export import export

    result = export(args.checkpoint, args.format, args.output, args.data_dir)
    v = result.verification
    print(f"verified with {v.runtime} on {v.images:,} test images: argmax identical on {v.argmax_agree:,}/{v.images:,}, "
          f"max |logit difference| {v.max_abs_logit_diff:.2e} (allowed {v.tolerance:g})")  # fmt: skip
    print(f"wrote {result.path} ({result.bytes:,} bytes), preprocessing in {result.sidecar}, record in {result.record}")
    return 0


def cmd_serve(args) -> int:
    from .serve import serve

    return serve(args.checkpoint, args.host, args.port, args.device, args.data_dir, args.max_batch, args.max_wait_ms)


def cmd_summary(args) -> int:
    from .models import count_parameters, create_model, summarize

    model = create_model(args.model)
    rows = summarize(model, args.batch_size)
    print(f"{args.model}: input [{args.batch_size}, 1, 28, 28]")
    print(f"{'layer':<10} {'type':<12} {'output shape':<20} {'parameters':>10}")
    conv_out = [r for r in rows if r.name.startswith("conv.")][-1]
    for row in rows:
        print(f"{row.name:<10} {row.kind:<12} {str(list(row.output_shape)):<20} {row.parameters:>10,}")
        if row is conv_out:  # the reshape the tutorial does in forward(): [batch, 16, 4, 4] -> [batch, 256]
            flat = [args.batch_size, math.prod(row.output_shape[1:])]
            print(f"{'(flatten)':<10} {'':<12} {str(flat):<20} {0:>10}")
    print(f"total parameters: {count_parameters(model):,}")
    return 0


def cmd_models(args) -> int:
    from .models import list_models
    from .recipes import list_recipes

    print("models:")
    for name, text in list_models().items():
        print(f"  {name:<12} {text}")
    print("recipes:")
    for name, text in list_recipes().items():
        print(f"  {name:<12} {text}")
    return 0


def _one_line(message: str) -> str:
    # A message may quote untrusted text (a file name, a tensor name) that holds a line break.
    return message.replace("\r", "\\r").replace("\n", "\\n")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except Interrupted as e:
        print(f"lenet {args.command}: {e}", file=sys.stderr)
        return 130
    except LenetError as e:
        print(_one_line(f"lenet {args.command}: error: {e}"), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"lenet {args.command}: interrupted", file=sys.stderr)
        return 130
    except OSError as e:
        message = f"lenet {args.command}: error: {e.strerror or e}: {e.filename or ''}".rstrip(": ")
        print(_one_line(message), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
