"""Issue 30's studies: recipes ("arms") over many seeds, judged on a validation split, side by side in one run.

    python -m benchmarks.anchors --arm default=default --arm erase=default,erase=0.5 \\
        [--seeds 10] [--first-seed 100] [--val-split 10000] [--epochs E] [--threads T] [--device cpu] \\
        [--subset N] [--write BENCHMARKS.md] [--section anchors-study] [--json FILE]

An arm is NAME=RECIPE[,FIELD=VALUE...]: a built-in recipe or a recipe .toml file, then recipe fields
as `lenet train`'s flags would set them (a value is read as TOML where it parses, else as text:
ema_decay=0.999, erase_fill=noise, teacher=runs/T, erase_area=[0.1,0.3]). Every arm trains every
seed; the seeds go round the arms in turn (seed 100 of each arm, then 101, ...), so that a change
of the machine's load over the study falls on every arm alike. Each run holds out the same
--val-split training images (drawn by the recipe's val_seed) and is judged on them with every
test-time view: the test set is never looked at here, so a study can choose (the test figures of
what it chose come from `lenet train --seeds`). Printed, per arm: the validation accuracy's mean,
min, max and standard deviation, the seconds of training per seed, and the mean of the per-seed
differences to the first arm (the same seeds, so the pairing removes the seeds' own spread), with
the machine and versions. A teacher must have held out the same validation images (its config.json
says so), or it would pass on what it learnt from them.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path

from benchmarks.train_speed import hardware, load_average

DEFAULT_SECTION = "anchors-study"


@dataclass(frozen=True)
class Arm:
    name: str
    base: str  # a recipe's name or a recipe file
    fields: dict  # recipe fields over the base's

    def recipe(self):
        from lenet.training.recipes import get_recipe, is_recipe_file, load_recipe_file, recipe_from_mapping

        base = load_recipe_file(self.base) if is_recipe_file(self.base) else get_recipe(self.base)
        return recipe_from_mapping(self.fields, f"arm {self.name}", base)

    def describe(self) -> str:
        return "`" + ", ".join([self.base] + [f"{k}={_text(v)}" for k, v in self.fields.items()]) + "`"


def _text(value) -> str:
    return " ".join(map(str, value)) if isinstance(value, (tuple, list)) else str(value)


def parse_arm(text: str) -> Arm:
    """NAME=RECIPE[,FIELD=VALUE...] as an Arm (its recipe is checked when the study starts)."""
    name, equals, rest = text.partition("=")
    if not equals or not name or not rest:
        raise argparse.ArgumentTypeError(f"an arm is NAME=RECIPE[,FIELD=VALUE...], not {text!r}")
    base, *assignments = _split(rest)
    fields = {}
    for assignment in assignments:
        key, equals, value = assignment.partition("=")
        if not equals:
            raise argparse.ArgumentTypeError(f"arm {name}: {assignment!r} is not FIELD=VALUE")
        fields[key.strip().replace("-", "_")] = _value(value.strip())
    return Arm(name, base.strip(), fields)


def _split(text: str) -> list[str]:
    """Split on commas outside brackets, so that a pair stays whole: erase_area=[0.1,0.3]."""
    parts, depth, current = [], 0, ""
    for char in text:
        depth += {"[": 1, "]": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    return [*parts, current]


def _value(text: str):
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text  # a word or a path: erase_fill=noise, teacher=runs/T


def check_teacher_split(arm: Arm, recipe, val_split: int) -> None:
    """Refuse a teacher that trained on the study's validation images (its soft targets would carry their labels)."""
    from lenet.core.errors import LenetError
    from lenet.runs.compat import read_config

    if not recipe.teacher:
        return
    teacher = Path(recipe.teacher)
    if not teacher.is_dir():
        raise LenetError(f"arm {arm.name}: the teacher must be a run directory, whose config.json says what "
                         "it held out")  # fmt: skip
    saved = read_config(teacher)
    held_out, seed = saved.val_split, saved.recipe.get("val_seed", 0)
    if (held_out, seed) != (val_split, recipe.val_seed):
        raise LenetError(f"arm {arm.name}: teacher {teacher} held out {held_out} images (val_seed {seed}), not this "
                         f"study's {val_split} (val_seed {recipe.val_seed}): it has seen the validation images; "
                         f"train it with --val-split {val_split}")  # fmt: skip


# The test images are never used here; a run computes its final figures on the test set anyway, so it
# gets this many of them, which keeps that cost (15 s a run for all 10,000 with ten views) out of the study.
TEST_IMAGES_KEPT = 100


def load_data(subset: int):
    from lenet.data.load import load_fashion_mnist

    data = load_fashion_mnist(download=False)
    train = slice(None, subset or None)
    return replace(data, train_images=data.train_images[train], train_labels=data.train_labels[train],
                   test_images=data.test_images[:TEST_IMAGES_KEPT],
                   test_labels=data.test_labels[:TEST_IMAGES_KEPT])  # fmt: skip


def run_study(arms: list[Arm], args, on_line=print) -> dict[str, list[dict]]:
    """Every arm over every seed, seeds round the arms; per arm, one record per seed."""
    from lenet.training.config import TrainConfig
    from lenet.training.engine import Engine
    from lenet.training.loop import train

    recipes = {}
    for arm in arms:
        recipe = arm.recipe()
        recipe = replace(recipe, epochs=args.epochs) if args.epochs else recipe
        check_teacher_split(arm, recipe, args.val_split)
        recipes[arm.name] = recipe
    data = load_data(args.subset)
    results: dict[str, list[dict]] = {arm.name: [] for arm in arms}
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        for arm in arms:
            config = TrainConfig(recipe=recipes[arm.name], recipe_name=arm.name, seed=seed, val_split=args.val_split,
                                 device=args.device, save=False, progress=False, eval_every=0,
                                 engine=Engine(threads=args.threads))  # fmt: skip
            result = train(config, data=data)
            record = {"seed": seed, "val_accuracy": result.val.accuracy, "train_seconds": result.train_seconds}
            results[arm.name].append(record)
            on_line(f"{arm.name} seed {seed}: val {record['val_accuracy']:.2%}, "
                    f"{record['train_seconds']:.1f} s of training")  # fmt: skip
    return results


def statistics_of(records: list[dict], first: list[dict]) -> dict:
    accuracies = [r["val_accuracy"] for r in records]
    seconds = [r["train_seconds"] for r in records]
    differences = [r["val_accuracy"] - f["val_accuracy"] for r, f in zip(records, first)]
    spread = lambda values: statistics.stdev(values) if len(values) > 1 else 0.0  # noqa: E731
    return {
        "seeds": len(records), "mean": statistics.fmean(accuracies), "min": min(accuracies), "max": max(accuracies),
        "std": spread(accuracies), "seconds_mean": statistics.fmean(seconds), "seconds_min": min(seconds),
        "seconds_max": max(seconds), "difference": statistics.fmean(differences),
        # The standard error of the mean paired difference: how far apart two arms must be to mean anything.
        "difference_se": spread(differences) / math.sqrt(len(differences)),
    }  # fmt: skip


def table(arms: list[Arm], stats: dict[str, dict]) -> list[str]:
    lines = ["| arm | recipe | seeds | val mean | min | max | std | vs first arm (paired, ± s.e.) "
             "| s of training per seed |",
             "|---|---|---:|---:|---:|---:|---:|---:|---|"]  # fmt: skip
    for i, arm in enumerate(arms):
        s = stats[arm.name]
        versus = "—" if i == 0 else f"{s['difference'] * 100:+.2f} ± {s['difference_se'] * 100:.2f} points"
        lines.append(f"| {arm.name} | {arm.describe()} | {s['seeds']} | {s['mean']:.2%} | {s['min']:.2%} | "
                     f"{s['max']:.2%} | {s['std']:.2%} | {versus} | {s['seconds_mean']:.1f} "
                     f"({s['seconds_min']:.1f}-{s['seconds_max']:.1f}) |")  # fmt: skip
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arm", dest="arms", type=parse_arm, action="append", required=True, metavar="NAME=RECIPE,...",
                        help="an arm of the study (repeat; the first is the one the others are compared with)")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--first-seed", type=int, default=100,
                        help="seeds the project never reported on (default: %(default)s)")  # fmt: skip
    parser.add_argument("--val-split", type=int, default=10_000, help="held-out training images that judge")
    parser.add_argument("--epochs", type=int, help="every arm's epochs (default: each recipe's own)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, help="CPU threads per run (default: PyTorch's)")
    parser.add_argument("--subset", type=int, default=0, metavar="N",
                        help="train on the first N training images only: a check of this script, not a measurement")
    parser.add_argument("--write", type=Path, metavar="FILE", help="put the table in FILE's section (BENCHMARKS.md)")
    parser.add_argument("--section", default=DEFAULT_SECTION, help="with --write: the section's name")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write every seed's figures as JSON")
    args = parser.parse_args(argv)
    names = [arm.name for arm in args.arms]
    if len(set(names)) != len(names):
        parser.error("two arms have one name")

    from lenet.core.errors import LenetError

    machine, started, load = hardware(args.device), time.strftime("%Y-%m-%d %H:%M"), load_average()
    print(machine, flush=True)
    start = time.monotonic()
    try:
        results = run_study(args.arms, args, on_line=lambda line: print(line, flush=True))
    except LenetError as e:
        print(f"anchors: error: {e}", file=sys.stderr)
        return 1
    first = results[args.arms[0].name]
    stats = {name: statistics_of(records, first) for name, records in results.items()}
    lines = table(args.arms, stats)
    print("\n" + "\n".join(lines))
    minutes = (time.monotonic() - start) / 60
    command = "python -m benchmarks.anchors " + " ".join(argv if argv is not None else sys.argv[1:])
    context = (f"`{command}`, started {started}, {minutes:.1f} min in all, load average {load} before it; {machine}. "
               f"Validation accuracy (every test-time view) on {args.val_split:,} held-out training images, seeds "
               f"{args.first_seed}-{args.first_seed + args.seeds - 1}; the test set was not used."
               + (f" **A check of the script on the first {args.subset:,} training images, not a measurement.**"
                  if args.subset else ""))  # fmt: skip
    if args.json:
        arms = {a.name: {"recipe": a.describe(), "runs": results[a.name], **stats[a.name]} for a in args.arms}
        args.json.write_text(json.dumps({"context": context, "arms": arms}, indent=2) + "\n")
    if args.write:
        from benchmarks.sections import write_section

        write_section(args.write, args.section, context + "\n\n" + "\n".join(lines))
        print(f"written to {args.write}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
