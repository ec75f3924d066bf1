"""Named hyperparameter sets. Every number a recipe trains with is in this file.

`seed` is the tutorial exactly; `default` is what `lenet train` uses. Each `Recipe` field
carries its help text and its bounds: `lenet train`'s flags, recipe files and sweep spaces are
all made from these fields (dataclasses.fields), so a new field is a new flag with no other edit.
Where a number is PyTorch's own default (OneCycleLR's start, end, anneal strategy and phases,
Adam's betas, eps and AMSGrad, SGD's dampening, batch norm's momentum and eps, the layers' own
weight initialisation), it is written out here anyway, so that nothing a run depends on is hidden
in a library. The validation split's draw has its own seed here too.
"""

from __future__ import annotations

import json
import os
import typing
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from lenet.core.errors import LenetError, UsageError, short_repr
from lenet.core.values import bounds, check_value
from lenet.runs.compat import saved_recipe_fields
from lenet.runs.record import load_toml
from lenet.models.lenet import MAX_SHIFT, MODELS

OPTIMIZERS = ("adam", "adamw", "sgd")
ANNEAL_STRATEGIES = ("cos", "linear")  # OneCycleLR's
# pytorch: each layer's own reset_parameters (Kaiming-uniform with a = sqrt(5) for convolutions and
# linear layers: the tutorial's, and what every recipe trained with before this field existed);
# kaiming: Kaiming-normal (fan-in, ReLU gain) weights and zero biases; xavier: Xavier-uniform and zero biases.
INITS = ("pytorch", "kaiming", "xavier")
PRECISIONS = ("fp32", "bf16", "auto")  # auto: bf16 where the device has bf16 units, else fp32
SCHEDULES = ("constant", "onecycle", "cosine")
# The augmentation draws from its own generator, seeded with seed + this, so that it never
# replays the shuffling generator's numbers (seeded with the seed itself).
AUGMENT_SEED_OFFSET = 1
# Alternating flips pick their fixed half of the images from a generator of its own (seed + this),
# so that turning them on leaves the shuffling and the shifts as they were.
FLIP_SEED_OFFSET = 2
ERASE_FILLS = ("zero", "noise")  # what an erased rectangle holds: black (the background), or random pixels
# The average's decay grows as min(ema_decay, (1 + t) / (10 + t)) over its first steps t (TensorFlow's
# ExponentialMovingAverage with num_updates): the random start weighs little even in a short run.
EMA_WARMUP = (1, 10)
# The whitened first layer (field whiten) takes its patches from the first 5,000 training images: about
# 3.9 million patches for a 25-value covariance, far more than it needs, in about a second on two cores.
WHITEN_IMAGES = 5_000
# Added to each eigenvalue before its inverse square root, as airbench does: the directions of least
# variance would otherwise be amplified without bound (their eigenvalues are near zero).
WHITEN_EPS = 5e-4


def absolute_path(value: str) -> str:
    """A path field's value, absolute ('' stays ''): relative to the directory the recipe was made in, so that
    a resume from elsewhere, or a sweep's trial (Ray runs each in a directory of its own), finds the same file."""
    return os.path.abspath(value) if value else value


def flag_name(field_name: str) -> str:
    """A recipe field as its flag and messages name it: warmup, momentum-range."""
    return field_name.replace("_", "-")


def _field(default: Any, help: str, *, low: float | None = None, high: float | None = None,
           above: float | None = None, below: float | None = None, choices: tuple[str, ...] | None = None,
           path: bool = False) -> Any:  # fmt: skip
    """A recipe field with its help text and bounds (low <= x <= high, above < x < below); a `path` field's
    value (a file or directory, '' for none) is made absolute wherever it is given (see absolute_path)."""
    meta = {"help": help, **bounds(low, high, above, below, choices), "path": path}
    if path:
        meta["shown"] = "none"  # how --help shows the default ''
    if isinstance(default, tuple):
        return field(default_factory=lambda: default, metadata=meta)
    return field(default=default, metadata=meta)


# Images per forward pass when evaluating. Flip averaging doubles it to 128, the training batch,
# so evaluation reuses the blocks training freed (13 MB per activation at 32 channels and 28x28).
# Measured on the 2-core CPU, the test set with ten views: 14-15 s in chunks of 64 against 28 s in
# chunks of 250 (smaller activations stay in the caches).
EVAL_CHUNK = 64

@dataclass(frozen=True)
class Recipe:
    model: str = _field("lenet_32x48_pn", "model from the registry (lenet models)", choices=tuple(MODELS))
    optimizer: str = _field("adamw", "optimizer", choices=OPTIMIZERS)
    lr: float = _field(0.01, "learning rate (the peak one for onecycle)", above=0)
    weight_decay: float = _field(0.01, "weight decay (decoupled for adamw, L2 for adam and sgd)", low=0)
    # PyTorch's default for one parameter group; kept while the validation split has not said otherwise.
    decay_norm_and_bias: bool = _field(True, "apply weight decay to batch-norm and bias parameters too")
    momentum: float = _field(0.9, "sgd's momentum", low=0, below=1)
    nesterov: bool = _field(True, "Nesterov momentum for sgd")
    betas: tuple[float, float] = _field((0.9, 0.999), "adam/adamw betas (beta1 is cycled instead under onecycle)",
                                        low=0, below=1)  # fmt: skip
    eps: float = _field(1e-8, "adam/adamw epsilon", above=0)
    amsgrad: bool = _field(False, "adam/adamw's AMSGrad variant")
    dampening: float = _field(0.0, "sgd's dampening of the momentum (Nesterov needs 0)",
                              low=0, below=1)  # fmt: skip
    schedule: str = _field("onecycle", "learning-rate schedule", choices=SCHEDULES)
    warmup: float = _field(0.2, "fraction of the steps rising to the peak (onecycle)", above=0, below=1)
    # OneCycleLR's own defaults: a start 25 times below the peak is gentle enough for sigmoid
    # nets; the end, 10^4 times below the start, is a full anneal.
    onecycle_start_div: float = _field(25.0, "onecycle starts at lr / this", low=1)
    onecycle_end_div: float = _field(1e4, "onecycle ends at its start lr / this", low=1)
    anneal_strategy: str = _field("cos", "how onecycle moves the lr between its points",
                                  choices=ANNEAL_STRATEGIES)  # fmt: skip
    three_phase: bool = _field(False, "onecycle in three phases: up, down to the start lr, then the final anneal")  # fmt: skip
    # Momentum (adam's beta1) falls while the lr rises and rises while it falls: a larger step
    # gets less of the past gradient's inertia (Smith's one-cycle policy, PyTorch's default).
    cycle_momentum: bool = _field(True, "onecycle cycles momentum (adam's beta1) against the lr")
    momentum_range: tuple[float, float] = _field((0.85, 0.95), "onecycle's low and high momentum", low=0, below=1)
    cosine_min_lr: float = _field(0.0, "the lr the cosine schedule ends at", low=0)
    # Batch norm's numbers and the weights' start: the defaults are PyTorch's, written out.
    bn_momentum: float = _field(0.1, "how far batch norm's running statistics move towards each batch's", low=0, high=1)  # fmt: skip
    bn_eps: float = _field(1e-5, "batch norm's epsilon", above=0, high=1)
    # airbench's frozen patch-whitening first layer (models/whitening.py): no backward pass through the
    # first convolution and its pooling, which are about 40% of a `fast` step at full resolution.
    whiten: bool = _field(False, "freeze the first convolution as the whitening of the training images' patches "
                                 "(its leading directions of variance, each with both signs) instead of training it")
    init: str = _field("pytorch", "weight initialisation: pytorch (each layer's own, as the tutorial), "
                                  "kaiming (normal) or xavier (uniform), these two with zero biases", choices=INITS)
    batch_size: int = _field(128, "training images per step", low=1)
    epochs: int = _field(15, "passes over the training images", low=1)
    label_smoothing: float = _field(0.1, "label smoothing of the training loss", low=0, below=1)
    shift: int = _field(1, "random translations by up to this many pixels (0 = off)", low=0, high=MAX_SHIFT)
    flip: bool = _field(True, "random horizontal flips")
    # airbench's alternating flips: each image is seen mirrored in every other epoch, so two
    # consecutive epochs show both sides of every image, where fresh coins repeat a side half the time.
    alternate_flips: bool = _field(False, "flips alternate: a fixed random half of the images is mirrored in odd "
                                          "epochs, the other half in even ones, instead of a fresh coin each epoch")
    test_flip: bool = _field(True, "average each test image's logits with its mirror's")
    test_shift: int = _field(1, "and with the image moved this many pixels up, down, left and right (0 = off)",
                             low=0, high=MAX_SHIFT)  # fmt: skip
    # bf16 changes the maths (a forward pass rounded to 8 bits of mantissa), so it is the recipe's
    # choice, not the engine's; a run records the precision it used, never "auto".
    precision: str = _field("auto", "bf16 autocasts the training forward pass; auto takes bf16 where the device "
                                    "has bf16 units (AMX or AVX-512 BF16 CPUs, Ampere and later GPUs), else fp32",
                            choices=PRECISIONS)  # fmt: skip
    # The validation split is drawn from its own generator, apart from the training seed, so that
    # every seed (and every trial of a sweep) is judged on the same images.
    val_seed: int = _field(0, "seed of the validation split's draw (--val-split), apart from --seed", low=0)
    # Evaluation in chunks keeps peak memory low; it changes no figure.
    eval_batch_size: int = _field(EVAL_CHUNK, "images per forward pass when evaluating", low=1)
    # --- levers of issue 30, each off by default, so that the recipes above train as before ---
    # Random erasing (Zhong et al. 2017; cutout is its fixed-square, zero-fill case), which the top
    # Fashion-MNIST entries use: a rectangle of a random share of the image and aspect is blanked,
    # drawn from the augmentation generator after the shifts and flips (off, no number is drawn, so
    # other runs keep their draws). torchvision's RandomErasing defaults for the area and aspect.
    erase: float = _field(0.0, "probability that a training image gets a random rectangle erased (0 = off)",
                          low=0, high=1)  # fmt: skip
    erase_area: tuple[float, float] = _field((0.02, 0.33), "the erased rectangle's share of the image, low and high",
                                             above=0, high=1)  # fmt: skip
    erase_ratio: tuple[float, float] = _field((0.3, 3.3), "the erased rectangle's height / width, low and high "
                                                          "(drawn log-uniformly)", above=0, high=100)  # fmt: skip
    erase_fill: str = _field("zero", "what an erased rectangle holds: zero (black) or noise (random pixels)",
                             choices=ERASE_FILLS)  # fmt: skip
    # An exponential moving average of the weights (and of batch norm's running statistics), which is
    # judged, evaluated and saved as the model. airbench found it (as lookahead) to help only together
    # with a fast batch-norm momentum (bn_momentum, above): vary the two together.
    ema_decay: float = _field(0.0, "decay per step of the weights' moving average, which becomes the model "
                                   "(0 = off; e.g. 0.999)", low=0, below=1)  # fmt: skip
    # Knowledge distillation (Hinton et al. 2015) from a teacher trained by lenet: the loss becomes
    # (1 - distill_weight) * the hard loss + distill_weight * T^2 * KL(teacher's softmax(z/T) || the
    # student's), the teacher run in no_grad on the same augmented batch (its own test-time views off).
    # The path is made absolute where it is given (a flag, a recipe file, a sweep's space), so that a resume
    # from another directory, or a sweep's trial (Ray runs each in its own directory), finds the same
    # teacher; config.json records the SHA-256 of its weights, and a resume refuses a teacher that changed.
    teacher: str = _field("", "a run directory (or .safetensors file) whose model teaches this one by distillation "
                              "('' = none)", path=True)  # fmt: skip
    # Hinton's soft targets: weight 0.5 and temperature 4 are common starting points (the temperature
    # softens the teacher's distribution so that its ranking of the wrong classes carries signal).
    distill_weight: float = _field(0.5, "share of the distillation loss in the training loss (with --teacher)",
                                   low=0, high=1)  # fmt: skip
    distill_temperature: float = _field(4.0, "softmax temperature of the distillation (with --teacher)",
                                        above=0, high=100)  # fmt: skip

    def __post_init__(self) -> None:
        types = typing.get_type_hints(Recipe)
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, list):  # a pair read from JSON or TOML
                object.__setattr__(self, f.name, value := tuple(value))
            check_value(flag_name(f.name), value, types[f.name], f.metadata)
            if f.metadata["path"]:
                object.__setattr__(self, f.name, absolute_path(value))
        if self.momentum_range[0] > self.momentum_range[1]:
            raise LenetError(f"momentum-range is low then high, not {self.momentum_range}")
        if self.three_phase and self.warmup >= 0.5:
            raise LenetError(f"three-phase onecycle rises for warmup and falls for as long again: warmup must be "
                             f"< 0.5, not {self.warmup}")
        for name in ("erase_area", "erase_ratio"):
            if getattr(self, name)[0] > getattr(self, name)[1]:
                raise LenetError(f"{flag_name(name)} is low then high, not {getattr(self, name)}")
        if self.optimizer == "sgd" and self.nesterov and self.dampening:
            raise LenetError(f"Nesterov momentum needs dampening 0, not {self.dampening}; add --no-nesterov")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Any, where: str = "recipe") -> Recipe:
        """A recipe lenet saved (config.json's, a sweep plan's): unknown fields refused, each value checked,
        and a field added since it was saved read as what it meant before it existed (compat.py)."""
        return recipe_from_mapping(saved_recipe_fields(d), where)


RECIPES: dict[str, tuple[Recipe, str]] = {
    "seed": (
        Recipe(
            model="lenet", optimizer="adam", lr=0.01, weight_decay=0.0, schedule="constant",
            batch_size=64, epochs=5, label_smoothing=0.0, shift=0, flip=False, test_flip=False, test_shift=0,
            precision="fp32",
        ),  # fmt: skip
        "the tutorial exactly: sigmoid LeNet, inputs in [0, 1], Adam lr 0.01, batch 64, 5 epochs "
        "(stuck at chance on 2 of seeds 0-9)",
    ),
    # pytorch.org's "Training a classifier" on CIFAR-10, as `seed` is ours: SGD lr 0.001 momentum 0.9 (plain,
    # not Nesterov), no weight decay, batch 4, 2 epochs, no augmentation, one view at test time. The one
    # difference is the order of its images, drawn by lenet's generator, not torchvision's DataLoader.
    "classifier": (
        Recipe(
            model="lenet_cifar", optimizer="sgd", lr=0.001, momentum=0.9, nesterov=False, weight_decay=0.0,
            schedule="constant", batch_size=4, epochs=2, label_smoothing=0.0, shift=0, flip=False, test_flip=False,
            test_shift=0, precision="fp32",
        ),  # fmt: skip
        "pytorch.org's classifier tutorial exactly (lenet_cifar; run it with --dataset cifar10): SGD lr 0.001, "
        "momentum 0.9, batch 4, 2 epochs",
    ),
    # lenet_32x48_pn, not lenet_32x48: the same layers with each max-pool before its batch norm, as
    # accurate on the validation split (docs/recipes.md, "Round 4") and about a sixth cheaper per step. bf16
    # where the device has bf16 units: as accurate on the validation split ("Round 5"), a third off a step.
    "default": (
        Recipe(),
        "lenet_32x48_pn (99k parameters, batch norm after the pooling), AdamW one-cycle, label smoothing, "
        "1-pixel shifts and flips, ten views averaged at test time (1-pixel shifts and mirrors), 15 epochs, "
        "bf16 where the device has bf16 units",
    ),
    # Time to 93%: chosen on the validation split (docs/recipes.md, "The fast recipe"). lenet_wide's convolutions
    # cost about half of lenet_32x48's per image; lenet_wide_pn (the same layers, each max-pool moved
    # before its batch norm) took a fifth off its step for the same validation accuracy; bf16 units cut
    # a step by a third more. Batch 256 and 13 epochs (round 3): as accurate on validation (seeds 0-7)
    # as batch 128 and 12 epochs, in about a tenth less time on two cores (a step of 256 costs 8-17%
    # less per image); 256 with 12 epochs or fewer, 384 and 512 were less accurate.
    "fast": (
        Recipe(model="lenet_wide_pn", epochs=13, batch_size=256, precision="auto"),
        "the default recipe with lenet_wide_pn (97k parameters, cheap convolutions, batch norm after "
        "the pooling), batch 256 and 13 epochs: time to 93%",
    ),
    # Issue 30's accuracy goal (at most 100k parameters): chosen on the validation split (docs/recipes.md, "The
    # accurate recipe" and its round two). Thirty epochs beat the default's fifteen on each of seeds 100-103, by
    # 0.46 points on average on 10,000 held-out images; fifty beat thirty on each again, by 0.31 (light erasing
    # with forty epochs as accurate as fifty, in 0.81 of the time; a lower peak lr gained nothing). A recipe of
    # its own, not the default: it takes over three times the default's time.
    "accurate": (
        Recipe(epochs=50),
        "the default recipe trained for 50 epochs: about 0.8 of a point more accurate on the validation split, "
        "in over three times the default's time",
    ),
}


def get_recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise UsageError(f"unknown recipe {name!r}; choose from {', '.join(RECIPES)}")
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
    return recipe_from_mapping(load_toml(path, "recipe file"), f"recipe file {path}")


def recipe_from_mapping(mapping: Any, where: str, base: Recipe | None = None) -> Recipe:
    """`base` (the default recipe when None) with the fields in `mapping`, each checked like a flag:
    the one way a recipe is made from a mapping (a recipe file, a sweep's [recipe], config.json)."""
    if not isinstance(mapping, dict):
        raise LenetError(f"{where}: a recipe is a mapping of fields, not {type(mapping).__name__}")
    known = field_types()
    unknown = sorted(map(str, set(mapping) - set(known)))
    if unknown:
        raise LenetError(f"{where}: unknown recipe field {short_repr(unknown[0])}; the fields are {', '.join(known)}")
    values = {name: check_field_value(name, value, where) for name, value in mapping.items()}
    try:
        return replace(base or Recipe(), **values)
    except LenetError as e:
        raise LenetError(f"{where}: {e}") from None


# The name the sweep knows (kept while the sweep helper moves to recipe_from_mapping).
recipe_from_table = recipe_from_mapping


def field_types() -> dict[str, Any]:
    """Recipe's fields and their Python types, read from the dataclass itself."""
    hints = typing.get_type_hints(Recipe)
    return {f.name: hints[f.name] for f in fields(Recipe)}


def check_field_value(name: str, value: Any, where: str) -> Any:
    """`value` as Recipe field `name` takes it (an int is a fine float, a list a pair), or a LenetError."""
    kind, meta = field_types()[name], next(f.metadata for f in fields(Recipe) if f.name == name)

    def coerce(v: Any, k: Any) -> Any:
        return float(v) if k is float and isinstance(v, int) and not isinstance(v, bool) else v

    if typing.get_origin(kind) is tuple and isinstance(value, list):
        value = tuple(coerce(v, k) for v, k in zip(value, typing.get_args(kind))) + tuple(value[len(typing.get_args(kind)):])
    value = coerce(value, kind)
    try:
        check_value(flag_name(name), value, kind, meta)
    except LenetError as e:
        raise LenetError(f"{where}: {e}") from None
    return absolute_path(value) if meta["path"] else value



def recipe_toml(recipe: Recipe, comments: list[str] = ()) -> str:
    """A recipe file `load_recipe_file` reads back to `recipe`: every field, comments first."""
    lines = [f"# {text}" for text in comments]
    for name, value in recipe.to_dict().items():
        if isinstance(value, (tuple, list)):
            text = "[" + ", ".join(repr(v) for v in value) + "]"
        else:
            text = json.dumps(value) if not isinstance(value, float) else repr(value)  # repr: exact, and valid TOML
        lines.append(f"{name} = {text}")
    return "\n".join(lines) + "\n"
