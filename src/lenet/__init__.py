"""lenet: the PyTorch tutorial's LeNet on Fashion-MNIST, as a real tool.

    from lenet import load_dataset, create_model, train, TrainConfig, load

The public names are imported when first used (PEP 562), not when the package is: `import
lenet.cli` (and every `lenet` command's start) then loads only what its command needs, and
`lenet train` never imports the prediction or image-decoding modules.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from lenet.core.version import __version__  # noqa: F401

# Each public name and the module that defines it.
_PUBLIC = {
    "load": "lenet.runs.checkpoint", "save_model": "lenet.runs.checkpoint",
    "Dataset": "lenet.data.dataset", "FashionMNIST": "lenet.data.dataset",
    "load_dataset": "lenet.data.load", "load_fashion_mnist": "lenet.data.load",
    "DataSpec": "lenet.data.registry", "list_datasets": "lenet.data.registry",
    "Classifier": "lenet.models.views", "Views": "lenet.models.views",
    "CheckpointError": "lenet.core.errors", "DataError": "lenet.core.errors", "ImageError": "lenet.core.errors",
    "LenetError": "lenet.core.errors",
    "Evaluation": "lenet.training.metrics", "evaluate": "lenet.training.metrics",
    "LeNet": "lenet.models.lenet", "LeNetConfig": "lenet.models.lenet", "create_model": "lenet.models.lenet",
    "list_models": "lenet.models.lenet", "summarize": "lenet.models.lenet",
    "load_image": "lenet.data.images",
    "Prediction": "lenet.inference.predict", "predict": "lenet.inference.predict",
    "RECIPES": "lenet.training.recipes", "Recipe": "lenet.training.recipes", "get_recipe": "lenet.training.recipes",
    "list_recipes": "lenet.training.recipes",
    "RunResult": "lenet.training.loop", "TrainConfig": "lenet.training.loop", "train": "lenet.training.loop",
    "prepare_resume": "lenet.training.resume", "resume_config": "lenet.training.resume",
    "read_run": "lenet.runs.directory", "write_report": "lenet.insight.report",
}  # fmt: skip

__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'lenet' has no attribute {name!r}")
    value = getattr(importlib.import_module(_PUBLIC[name]), name)
    globals()[name] = value  # found here from now on, without this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_PUBLIC})


if TYPE_CHECKING:  # what type checkers and editors see: the names, imported as before
    from lenet.core.errors import CheckpointError, DataError, ImageError, LenetError  # noqa: F401
    from lenet.data.dataset import Dataset, FashionMNIST  # noqa: F401
    from lenet.data.images import load_image  # noqa: F401
    from lenet.data.load import load_dataset, load_fashion_mnist  # noqa: F401
    from lenet.data.registry import DataSpec, list_datasets  # noqa: F401
    from lenet.inference.predict import Prediction, predict  # noqa: F401
    from lenet.models.lenet import LeNet, LeNetConfig, create_model, list_models, summarize  # noqa: F401
    from lenet.models.views import Classifier, Views  # noqa: F401
    from lenet.insight.report import write_report  # noqa: F401
    from lenet.runs.checkpoint import load, save_model  # noqa: F401
    from lenet.runs.directory import read_run  # noqa: F401
    from lenet.training.resume import prepare_resume, resume_config  # noqa: F401
    from lenet.training.loop import RunResult, TrainConfig, train  # noqa: F401
    from lenet.training.metrics import Evaluation, evaluate  # noqa: F401
    from lenet.training.recipes import RECIPES, Recipe, get_recipe, list_recipes  # noqa: F401
