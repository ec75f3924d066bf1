"""Issue 37's colour study: discs told apart by hue alone, at equal brightness, read in colour and in grey.

    python -m benchmarks.colour [--per-class 150] [--seeds 5] [--dir /tmp/colour-study]

Draws two folders of the same discs (each class a hue, a disc of random size and place on a light ground in
an image of 24-48 pixels): one in colour, one the same images in grey. Then trains the default recipe on
each over seeds 0..N-1, the colour folder both as lenet reads it (colour, inferred) and with --channels 1,
and prints each arm's test accuracies with the machine and versions. Accuracy on the CPU is deterministic.
"""

from __future__ import annotations

import argparse
import random
import statistics
from pathlib import Path

from benchmarks.train_speed import hardware

# Equal brightness, different hue: Pillow's grey values of the three are 99.7-99.8 (issue 37's folder).
HUES = {"red": (230, 45, 40), "green": (0, 170, 0), "blue": (40, 100, 255)}
SIDES = (24, 48)  # an image's side in pixels, drawn uniformly
RADIUS = (0.2, 0.4)  # a disc's radius as a share of the side
GROUND = (225, 250)  # each channel of the light ground


def draw_discs(root: Path, per_class: int, grey: bool = False, seed: int = 0) -> Path:
    """A disc of each class's hue on a light ground, at a random size and place; the same images whatever
    `grey` says, which only saves them in grey."""
    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    for name, colour in HUES.items():
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            side = rng.randint(*SIDES)
            img = Image.new("RGB", (side, side), tuple(rng.randint(*GROUND) for _ in range(3)))
            r = rng.uniform(*RADIUS) * side
            cx, cy = rng.uniform(r, side - r), rng.uniform(r, side - r)
            ImageDraw.Draw(img).ellipse((cx - r, cy - r, cx + r, cy + r), fill=colour)
            (img.convert("L") if grey else img).save(folder / f"{i}.png")
    return root


def main(argv: list[str] | None = None) -> None:
    from lenet import TrainConfig, get_recipe, train
    from lenet.data.load import load_dataset

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=150)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/colour-study"))
    args = parser.parse_args(argv)
    colours = draw_discs(args.dir / "colours", args.per_class)
    grey = draw_discs(args.dir / "grey", args.per_class, grey=True)
    arms = {"colour folder, as read (colour)": (colours, None), "colour folder, --channels 1": (colours, 1),
            "grey folder": (grey, None)}  # fmt: skip
    print(hardware("cpu"))
    print(f"{len(HUES)} classes x {args.per_class} images; default recipe; seeds 0-{args.seeds - 1}")
    for name, (folder, channels) in arms.items():
        data = load_dataset(f"folder:{folder}", channels=channels)
        accuracies = []
        for seed in range(args.seeds):
            config = TrainConfig(recipe=get_recipe("default"), seed=seed, device="cpu", save=False, progress=False)
            accuracies.append(train(config, data=data).final.accuracy)
        shape = "x".join(map(str, data.spec.image_shape))
        print(f"{name} ({shape}): test accuracy mean {statistics.mean(accuracies):.2%}, lowest {min(accuracies):.2%} "
              f"({', '.join(f'{a:.2%}' for a in accuracies)}) on {len(data.test_labels)} test images")


if __name__ == "__main__":
    main()
