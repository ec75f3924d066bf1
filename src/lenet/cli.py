"""The `lenet` command: parse, call the library, print. No logic of its own."""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import replace
from typing import NoReturn

from .errors import LenetError


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


def build_parser() -> argparse.ArgumentParser:
    from .device import DEVICES
    from .models import list_models
    from .recipes import OPTIMIZERS, SCHEDULES, list_recipes

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
    t.add_argument("--seed", type=int, default=0, help="seeds weights, shuffling and augmentation (default: 0)")
    t.add_argument("--seeds", type=positive_int, default=1, help="train this many seeds from --seed on; report statistics")
    t.add_argument("--val-split", type=positive_int, help="hold out this many training images and judge every epoch on them")
    t.add_argument("--deterministic", action="store_true", help="deterministic CUDA kernels (the CPU always is)")
    _add_device(t, DEVICES)
    _add_data_dir(t)
    t.add_argument("--out", default="runs", help="directory that holds run directories (default: runs)")
    t.add_argument("--name", help="run directory name (default: RECIPE-seedN-TIMESTAMP); never overwritten")
    t.add_argument("--save-model", action=argparse.BooleanOptionalAction, default=True, help="write the run directory")
    t.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True, help="progress bar on a terminal")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("eval", help="evaluate a run or checkpoint on the test set")
    e.add_argument("checkpoint", metavar="RUN_OR_CHECKPOINT")
    e.add_argument("--batch-size", type=positive_int, default=1000)
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

    s = sub.add_parser("summary", help="layer-by-layer output shapes and parameter counts")
    s.add_argument("--model", default="lenet", choices=list(list_models()))
    s.add_argument("--batch-size", type=positive_int, default=64)
    s.set_defaults(func=cmd_summary)

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
    from .recipes import get_recipe
    from .train import TrainConfig, train, train_seeds

    fields = ("model", "epochs", "batch_size", "lr", "optimizer", "weight_decay", "schedule", "label_smoothing",
              "shift", "flip", "test_flip")  # fmt: skip
    overrides = {key: value for key in fields if (value := getattr(args, key)) is not None}
    recipe = replace(get_recipe(args.recipe), **overrides)
    config = TrainConfig(
        recipe=recipe, recipe_name=args.recipe, seed=args.seed, val_split=args.val_split or 0, device=args.device,
        deterministic=args.deterministic, data_dir=args.data_dir, out=args.out, name=args.name,
        save=args.save_model, progress=args.progress,
    )  # fmt: skip
    print(f"recipe {args.recipe}: model {recipe.model}, {recipe.optimizer} lr {recipe.lr}, batch {recipe.batch_size}, "
          f"{recipe.epochs} epochs, seed {args.seed}" + (f" (+{args.seeds - 1} more)" if args.seeds > 1 else ""),
          flush=True)  # fmt: skip
    callbacks = {
        "on_epoch": lambda row: print(_epoch_line(row, recipe.epochs), flush=True),
        "on_warning": lambda text: print(f"warning: {text}", file=sys.stderr, flush=True),
    }
    if args.seeds == 1:
        _print_result(train(config, **callbacks))
        return 0
    _, stats = train_seeds(config, args.seeds, on_run=lambda seed, r: _print_result(r, f"seed {seed}: "), **callbacks)
    print(f"{stats['runs']} seeds: test accuracy mean {stats['mean']:.2%}, std {stats['std']:.2%}, "
          f"min {stats['min']:.2%}, max {stats['max']:.2%}; {stats['stuck']} stuck at chance")  # fmt: skip
    return 0


def _print_result(result, prefix: str = "") -> None:
    final = result.final
    print(f"{prefix}test accuracy {final.accuracy:.2%} ({final.correct}/{final.total}), test loss {final.loss:.4f}, "
          f"{result.train_seconds:.1f} s of training", flush=True)  # fmt: skip
    if result.run_dir is not None:
        print(f"{prefix}run saved to {result.run_dir}", flush=True)


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
