"""Starting a run from another run's weights (`--start-from RUN`): fine-tuning on other data, or a finished
run taken further as a new run that names its parent.

The parent is read once, when the new run begins; its identity (weights file and SHA-256, data set,
epochs) goes into the new run's config.json, and a resume goes on from the new run's own state, never
reading the parent again.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from lenet.core.errors import LenetError
from lenet.core.text import plural
from lenet.data.registry import DataSpec, shown_name
from lenet.models.lenet import LeNetConfig
from lenet.models.views import Classifier
from lenet.runs.checkpoint import load, read_checkpoint, resolve_weights
from lenet.runs.compat import read_config
from lenet.runs.config import CONFIG_FILE, StartRecord
from lenet.training.build import recipe_model_config
from lenet.training.recipes import Recipe


@dataclass(frozen=True)
class Parent:
    """The run a new run starts from: its model as saved, and who it is."""

    model: Classifier
    record: StartRecord


def read_parent(source: str) -> Parent:
    """The parent's model and identity; a missing or damaged one is one LenetError."""
    weights = resolve_weights(source)
    model = load(weights)
    epochs = int(read_checkpoint(weights)[4].get("epoch", "0"))  # a run's checkpoint says how far it trained
    record = StartRecord(path=str(Path(source).resolve()), weights=str(weights.resolve()),
                         sha256=hashlib.sha256(weights.read_bytes()).hexdigest(), data=model.data.name,
                         classes=list(model.data.classes), epochs=epochs)  # fmt: skip
    return Parent(model, record)


def parent_recipe(source: str) -> tuple[Recipe, str]:
    """The recipe a run was trained with, to take it further with the same one (its teacher left out: a
    run's files never choose a path to read; --teacher names one)."""
    run_dir = Path(source)
    if not (run_dir / CONFIG_FILE).is_file():
        raise LenetError(f"--start-from {source}: no config.json there, so no recipe to go on with; "
                         "name one with --recipe")  # fmt: skip
    saved = read_config(run_dir)
    recipe = Recipe.from_dict(saved.recipe, f"{run_dir}/{CONFIG_FILE}")
    return replace(recipe, teacher=""), saved.recipe_name


def check_start(parent: Parent, recipe: Recipe, data: DataSpec) -> str:
    """One line on what the new run takes from its parent; a parent of another architecture is refused."""
    mine = recipe_model_config(recipe, data)
    theirs = parent.model.net.config
    if (mine.in_channels, mine.image_size) != (theirs.in_channels, theirs.image_size):
        raise LenetError(f"--start-from {parent.record.path}: it takes {input_words(theirs)} images, the data gives "
                         f"{input_words(mine)}; read a folder to fit it with --channels {theirs.in_channels} --size "
                         f"{theirs.image_size}, or start afresh")  # fmt: skip
    if architecture(mine) != architecture(theirs):
        raise LenetError(f"--start-from {parent.record.path}: its network ({describe(theirs)}) is not the recipe's "
                         f"{recipe.model} ({describe(mine)}); pass --model with the parent's model, or start afresh")  # fmt: skip
    what = (f"starting from {parent.record.path} ({shown_name(parent.record.data)}, "
            f"{plural(parent.record.epochs, 'epoch')})")
    if list(data.classes) == parent.record.classes:
        return f"{what}: all its weights"
    return (f"{what}: its weights, with a new last layer for the {len(data.classes)} classes of "
            f"{shown_name(data.name)} (it knew {len(parent.record.classes)})")


def architecture(config: LeNetConfig) -> tuple:
    """What must match for the weights to fit: not the classes or the input statistics (the data's), nor
    batch norm's momentum (the recipe's)."""
    return (config.activation, config.pool, config.batch_norm, config.padding, config.channels, config.hidden,
            config.norm_after_pool)  # fmt: skip


def input_words(config: LeNetConfig) -> str:
    return f"{'colour' if config.in_channels == 3 else 'grey'} {config.image_size}x{config.image_size}"


def describe(config: LeNetConfig) -> str:
    norm = ", batch norm" if config.batch_norm else ""
    return (f"{config.activation}, channels {config.channels[0]}/{config.channels[1]}, "
            f"hidden {config.hidden[0]}/{config.hidden[1]}{norm}")

def take_weights(model: Classifier, parent: Parent) -> None:
    """The parent's weights into `model`, every tensor whose shape fits (all but the last layer's where
    the classes differ, which keeps its fresh draw)."""
    mine = model.net.state_dict()
    theirs = parent.model.net.state_dict()
    taken = {key: value for key, value in theirs.items() if key in mine and mine[key].shape == value.shape}
    with torch.no_grad():
        model.net.load_state_dict({**mine, **{k: v.to(mine[k].device, mine[k].dtype) for k, v in taken.items()}})
