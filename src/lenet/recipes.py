"""Named hyperparameter sets. Every number a recipe trains with is in this file.

`seed` is the tutorial exactly; `default` is what `lenet train` uses. Command-line flags
override single fields of the chosen recipe (dataclasses.replace).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, get_type_hints

from .errors import LenetError, short_repr
from .metrics import EVAL_CHUNK
from .models import MAX_SHIFT, MODELS

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "onecycle", "cosine")


# What a field added later meant before it existed (for configs saved by older versions).
BEFORE_FIELD = {"test_shift": 0}


@dataclass(frozen=True)
class Recipe:
    model: str = "lenet_32x48"
    optimizer: str = "adamw"
    lr: float = 0.01  # peak learning rate for onecycle
    weight_decay: float = 0.01
    momentum: float = 0.9  # sgd only
    schedule: str = "onecycle"
    warmup: float = 0.2  # fraction of steps rising to the peak (onecycle)
    batch_size: int = 128
    epochs: int = 15
    label_smoothing: float = 0.1
    shift: int = 1  # random translations by up to this many pixels
    flip: bool = True  # random horizontal flips
    test_flip: bool = True  # average each test image's logits with its mirror's
    test_shift: int = 1  # and with those of the image moved this many pixels up, down, left, right
    eval_batch_size: int = EVAL_CHUNK  # evaluation in chunks keeps peak memory low

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise LenetError(f"unknown model {self.model!r}; choose from {', '.join(MODELS)}")
        if self.optimizer not in OPTIMIZERS:
            raise LenetError(f"unknown optimizer {self.optimizer!r}; choose from {', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            raise LenetError(f"unknown schedule {self.schedule!r}; choose from {', '.join(SCHEDULES)}")
        for name in ("batch_size", "epochs", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise LenetError(f"{name.replace('_', '-')} must be at least 1, not {getattr(self, name)}")
        if not self.lr > 0:
            raise LenetError(f"lr must be positive, not {self.lr}")
        if self.weight_decay < 0:
            raise LenetError(f"weight-decay must not be negative, not {self.weight_decay}")
        if not 0 <= self.label_smoothing < 1:
            raise LenetError(f"label-smoothing must be in [0, 1), not {self.label_smoothing}")
        for name in ("shift", "test_shift"):
            if not 0 <= getattr(self, name) <= MAX_SHIFT:
                raise LenetError(f"{name.replace('_', '-')} must be 0 to {MAX_SHIFT} pixels, not {getattr(self, name)}")
        if not 0 < self.warmup < 1:
            raise LenetError(f"warmup must be in (0, 1), not {self.warmup}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Recipe:
        known = {f.name for f in fields(cls)}
        d = {**BEFORE_FIELD, **d}  # a run saved before a field existed resumes as it was started
        return cls(**{k: v for k, v in d.items() if k in known})


RECIPES: dict[str, tuple[Recipe, str]] = {
    "seed": (
        Recipe(
            model="lenet", optimizer="adam", lr=0.01, weight_decay=0.0, schedule="constant",
            batch_size=64, epochs=5, label_smoothing=0.0, shift=0, flip=False, test_flip=False, test_shift=0,
        ),  # fmt: skip
        "the tutorial exactly: sigmoid LeNet, inputs in [0, 1], Adam lr 0.01, batch 64, 5 epochs "
        "(gets stuck at chance on about a third of seeds)",
    ),
    "default": (
        Recipe(),
        "lenet_32x48 (99k parameters), AdamW one-cycle, label smoothing, 1-pixel shifts and flips, "
        "ten views averaged at test time (1-pixel shifts and mirrors), 15 epochs",
    ),
}


def get_recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise LenetError(f"unknown recipe {name!r}; choose from {', '.join(RECIPES)}")
    return RECIPES[name][0]


def list_recipes() -> dict[str, str]:
    return {name: description for name, (_, description) in RECIPES.items()}


# --- recipes from files ---------------------------------------------------------------


def is_recipe_file(name: str) -> bool:
    """`--recipe` names a built-in recipe, or a TOML file by its .toml ending."""
    return name.endswith(".toml")


def load_recipe_file(path: str | os.PathLike) -> Recipe:
    """A recipe from a TOML file whose top-level keys are Recipe fields (the ones left out keep
    the default recipe's values). Validated like the built-in recipes: an unknown key, a value
    of the wrong type or out of range is one LenetError."""
    import tomllib

    try:
        with open(path, "rb") as f:
            table = tomllib.load(f)
    except FileNotFoundError:
        raise LenetError(f"recipe file {path}: no such file") from None
    except OSError as e:
        raise LenetError(f"recipe file {path}: unreadable ({e.strerror})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise LenetError(f"recipe file {path}: not valid TOML ({e})") from None
    return recipe_from_table(table, f"recipe file {path}")


def recipe_from_table(table: dict[str, Any], where: str, base: Recipe | None = None) -> Recipe:
    """`base` (the default recipe when None) with the fields in `table`, each checked for its type."""
    known = field_types()
    unknown = sorted(set(table) - set(known))
    if unknown:
        raise LenetError(f"{where}: unknown recipe field {unknown[0]!r}; the fields are {', '.join(known)}")
    values = {name: check_field_value(name, value, where) for name, value in table.items()}
    try:
        return replace(base or Recipe(), **values)
    except LenetError as e:
        raise LenetError(f"{where}: {e}") from None


def field_types() -> dict[str, type]:
    """Recipe's fields and their Python types, read from the dataclass itself."""
    hints = get_type_hints(Recipe)
    return {f.name: hints[f.name] for f in fields(Recipe)}


def check_field_value(name: str, value: Any, where: str) -> Any:
    """`value` as the type of Recipe field `name` (an int is a fine float), or a LenetError."""
    kind = field_types()[name]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if type(value) is not kind:  # bool is an int subclass: `shift = true` is refused
        raise LenetError(f"{where}: {name} must be {kind.__name__}, not {short_repr(value)}")
    return value


def recipe_toml(recipe: Recipe, comments: list[str] = ()) -> str:
    """A recipe file `load_recipe_file` reads back to `recipe`: every field, comments first."""
    lines = [f"# {text}" for text in comments]
    for name, value in recipe.to_dict().items():
        text = json.dumps(value) if not isinstance(value, float) else repr(value)  # repr: exact, and valid TOML
        lines.append(f"{name} = {text}")
    return "\n".join(lines) + "\n"
