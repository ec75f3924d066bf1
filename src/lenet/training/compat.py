"""Files written by older versions of lenet, read as they were meant: the one place that knows them.

Every reader of a saved record (config.json, a checkpoint's metadata) goes through here, so the
loop, the checkpoint reader and the run reader see only today's shapes:

- a recipe field added later means what it meant before it existed (BEFORE_FIELD), or its default;
- `precision` was an engine setting before it became the recipe's;
- the test-time views were model options (`flip_tta`, `shift_tta`) before they became a wrapper;
- checkpoints from before other data sets were all of Fashion-MNIST;
- config.json gained `eval_every`, the data set's name and the report choice later.
"""

from __future__ import annotations

from typing import Any

from lenet.data.registry import DEFAULT, DataSpec, default_spec
from lenet.models.lenet import LeNetConfig
from lenet.models.views import Views

# What a recipe field added later meant before it existed, where that differs from its default.
# Fields added with PyTorch's own default (anneal_strategy, amsgrad, bn_momentum, ...) need no entry:
# the default is what PyTorch did before the field existed.
BEFORE_FIELD: dict[str, Any] = {"test_shift": 0, "precision": "fp32"}


def saved_recipe_fields(mapping: Any) -> Any:
    """A saved recipe's fields with those added since it was saved, as they were before they existed
    (Recipe.from_dict reads a saved recipe through this; a non-mapping is passed on to be refused)."""
    return {**BEFORE_FIELD, **mapping} if isinstance(mapping, dict) else mapping


def recipe_and_engine(saved: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """config.json's recipe and engine mappings; a run saved when precision was an engine setting has it moved over."""
    recipe, engine = dict(saved["recipe"]), dict(saved.get("engine", {}))
    precision = engine.pop("precision", None)
    if precision is not None and "precision" not in recipe:
        recipe["precision"] = precision
    return recipe, engine


def saved_dataset(saved: dict[str, Any]) -> str:
    """The data set a run trained on; runs from before other data sets name none."""
    return saved.get("data", {}).get("name", DEFAULT)


def saved_eval_every(saved: dict[str, Any]) -> int:
    """Runs from before --eval-every evaluated every epoch."""
    return saved.get("eval_every", 1)


def saved_report(saved: dict[str, Any]) -> bool:
    """Whether the run writes its report after training; runs from before the choice was recorded did."""
    return saved.get("report", True)


def model_and_views(model_config: dict, views: dict | None = None) -> tuple[LeNetConfig, Views]:
    """The network's config and its views, as saved; also as saved before the views left the model.

    Until lenet 0.1.0's views became a wrapper, the model config held them as flip_tta and shift_tta.
    """
    if isinstance(model_config, dict) and views is None:
        model_config = dict(model_config)
        views = {"flip": model_config.pop("flip_tta", False), "shift": model_config.pop("shift_tta", 0)}
    return LeNetConfig.from_dict(model_config), Views.from_dict(views)


def checkpoint_data(data: dict | None) -> DataSpec:
    """A checkpoint's data set; checkpoints from before other data sets were all of Fashion-MNIST."""
    return DataSpec.from_dict(data) if data is not None else default_spec()


def saved_cuda_rng(rng: dict[str, Any]) -> Any:
    """The CUDA generator's state in a train_state.pt; states from before it was saved have none."""
    return rng.get("cuda")
