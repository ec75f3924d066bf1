"""Files written by older versions of lenet, read as they were meant: the one place that knows them.

Every reader of a saved record (config.json, a checkpoint's metadata) goes through here, so the
loop, the checkpoint reader and the run reader see only today's shapes:

- a recipe field added later means what it meant before it existed (BEFORE_FIELD), or its default;
- `precision` was an engine setting before it became the recipe's;
- the test-time views were model options (`flip_tta`, `shift_tta`) before they became a wrapper;
- checkpoints from before other data sets were all of Fashion-MNIST;
- config.json gained `eval_every`, the data set's name, the report choice and `skip_bad` later;
- a user's data set's digest was kept only as its four tensor hashes before DataSpec held it.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from lenet.data.registry import DEFAULT, DataSpec, data_digest, default_spec, is_user_data
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


def saved_skip_bad(saved: dict[str, Any]) -> bool:
    """Whether the run left unreadable files out (--skip-bad); runs from before the choice did not."""
    return bool(saved.get("data", {}).get("skip_bad", False))


def saved_data_spec(saved: dict[str, Any]) -> DataSpec:
    """config.json's data set: name, classes and digest (from the four tensor hashes, for a run saved
    before DataSpec held the digest; Fashion-MNIST for a run saved before any other data set)."""
    record = saved.get("data", {})
    spec = DataSpec.from_dict(record["spec"]) if "spec" in record else default_spec()
    return with_hashes_digest(spec, record.get("sha256"))


def with_hashes_digest(spec: DataSpec, hashes: Any) -> DataSpec:
    """A user's data set's spec given its digest from the four tensor hashes a run of that time recorded."""
    if spec.sha256 or not is_user_data(spec.name) or not isinstance(hashes, dict):
        return spec
    return replace(spec, sha256=data_digest(hashes))


def checkpoint_data_digest(weights: Path, data: DataSpec) -> DataSpec:
    """A checkpoint saved before DataSpec held its data's digest: its run directory's config.json has
    the four tensor hashes it is made of (a bare checkpoint file of that time has none)."""
    if data.sha256 or not is_user_data(data.name):
        return data
    try:
        record = json.loads((weights.parent / "config.json").read_text(encoding="utf-8"))["data"]
        return with_hashes_digest(data, record["sha256"]) if record["name"] == data.name else data
    except (OSError, ValueError, KeyError, TypeError):
        return data


def saved_cuda_rng(rng: dict[str, Any]) -> Any:
    """The CUDA generator's state in a train_state.pt; states from before it was saved have none."""
    return rng.get("cuda")
