"""Files written by older versions of lenet, read as they were meant: the one place that knows them.

Every reader of a saved record goes through the schemas (record.py), and the schemas through here
first, so the rest of lenet sees only today's shapes. A field a file gained later is absent in an
older file and takes the schema's default, which is what lenet did before the field existed
(config.json's eval_every 1, report true, skip_bad false, data Fashion-MNIST; plan.json's
train_subset and test_subset none, dataset Fashion-MNIST; train_state.pt's CUDA generator none; its data_dir, from before a run's files
stopped choosing paths, is ignored). What a default cannot say is here:

- a recipe field added later means what it meant before it existed (BEFORE_FIELD), or its default;
- `precision` was an engine setting before it became the recipe's;
- the test-time views were model options (`flip_tta`, `shift_tta`) before they became a wrapper;
- checkpoints from before other data sets were all of Fashion-MNIST;
- a user's data set's digest was kept only as its four tensor hashes before DataSpec held it;
- export.json, trials.json and sessions.json were a bare mapping or list before they had a format version.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from lenet.core.errors import LenetError, RunError
from lenet.data.registry import DataSpec, data_digest, default_spec, is_user_data
from lenet.models.lenet import LeNetConfig
from lenet.models.views import Views
from lenet.runs.config import CONFIG_FILE, ConfigRecord, DataRecord
from lenet.runs.record import read_record

# What a recipe field added later meant before it existed, where that differs from its default.
# Fields added with PyTorch's own default (anneal_strategy, amsgrad, bn_momentum, ...) need no entry:
# the default is what PyTorch did before the field existed.
BEFORE_FIELD: dict[str, Any] = {"test_shift": 0, "precision": "fp32"}


def saved_recipe_fields(mapping: Any) -> Any:
    """A saved recipe's fields with those added since it was saved, as they were before they existed
    (Recipe.from_dict reads a saved recipe through this; a non-mapping is passed on to be refused)."""
    return {**BEFORE_FIELD, **mapping} if isinstance(mapping, dict) else mapping


def upgrade_config(saved: Any) -> Any:
    """config.json as today's schema reads it: a run saved when precision was an engine setting has it
    moved into the recipe."""
    if not isinstance(saved, dict):
        return saved
    recipe, engine = saved.get("recipe"), saved.get("engine")
    if isinstance(recipe, dict) and isinstance(engine, dict) and "precision" in engine:
        engine = {k: v for k, v in engine.items() if k != "precision"}
        recipe = recipe if "precision" in recipe else {**recipe, "precision": saved["engine"]["precision"]}
        saved = {**saved, "recipe": recipe, "engine": engine}
    return saved


def upgrade_export_record(saved: Any) -> Any:
    """export.json was a bare mapping of kinds to entries before it had a format version."""
    return saved if not isinstance(saved, dict) or "format_version" in saved else {"exports": saved}


def read_config(run_dir: Path) -> ConfigRecord:
    """A run's config.json, upgraded and checked; a directory without one is not a run."""
    if not (run_dir / CONFIG_FILE).is_file():
        raise RunError(f"{run_dir}: not a run directory (no {CONFIG_FILE})")
    return read_record(run_dir / CONFIG_FILE, ConfigRecord, upgrade_config)


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


def saved_data_spec(data: DataRecord) -> DataSpec:
    """config.json's data set: name, classes and digest (from the four tensor hashes, for a run saved
    before DataSpec held the digest; Fashion-MNIST for a run saved before any other data set)."""
    spec = DataSpec.from_dict(data.spec) if data.spec is not None else default_spec()
    return with_hashes_digest(spec, data.sha256)


def with_hashes_digest(spec: DataSpec, hashes: dict[str, str] | None) -> DataSpec:
    """A user's data set's spec given its digest from the four tensor hashes a run of that time recorded."""
    if spec.sha256 or not is_user_data(spec.name) or hashes is None:
        return spec
    return replace(spec, sha256=data_digest(hashes))


def checkpoint_data_digest(weights: Path, data: DataSpec) -> DataSpec:
    """A checkpoint saved before DataSpec held its data's digest: its run directory's config.json has
    the four tensor hashes it is made of (a bare checkpoint file of that time has none)."""
    if data.sha256 or not is_user_data(data.name) or not (weights.parent / CONFIG_FILE).is_file():
        return data
    try:
        record = read_config(weights.parent).data
    except LenetError:
        return data
    return with_hashes_digest(data, record.sha256) if record.name == data.name else data


def upgrade_trials(saved: Any) -> Any:
    """trials.json was a bare mapping of trial numbers to endings before it had a format version."""
    return saved if not isinstance(saved, dict) or "format_version" in saved else {"trials": saved}


def upgrade_sessions(saved: Any) -> Any:
    """sessions.json was a bare list of sessions before it had a format version."""
    return {"sessions": saved} if isinstance(saved, list) else saved
