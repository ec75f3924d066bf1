"""lenet: the PyTorch tutorial's LeNet on Fashion-MNIST, as a real tool.

    from lenet import load_dataset, create_model, train, TrainConfig, load
"""

from lenet.core.version import __version__  # noqa: F401

from lenet.training.checkpoint import load, save_model  # noqa: E402
from lenet.data.dataset import Dataset, FashionMNIST  # noqa: E402
from lenet.data.load import load_dataset, load_fashion_mnist  # noqa: E402
from lenet.data.registry import DataSpec, list_datasets  # noqa: E402
from lenet.models.views import Classifier, Views  # noqa: E402
from lenet.core.errors import CheckpointError, DataError, ImageError, LenetError  # noqa: E402
from lenet.training.metrics import Evaluation, evaluate  # noqa: E402
from lenet.models.lenet import LeNet, LeNetConfig, create_model, list_models, summarize  # noqa: E402
from lenet.data.images import load_image  # noqa: E402
from lenet.inference.predict import Prediction, predict  # noqa: E402
from lenet.training.recipes import RECIPES, Recipe, get_recipe, list_recipes  # noqa: E402
from lenet.training.loop import RunResult, TrainConfig, train  # noqa: E402

__all__ = [
    "CheckpointError", "Classifier", "DataError", "DataSpec", "Dataset", "Evaluation", "FashionMNIST", "ImageError",
    "LeNet", "LeNetConfig", "LenetError", "Prediction", "RECIPES", "Recipe", "RunResult",
    "TrainConfig", "Views", "create_model", "evaluate", "get_recipe", "list_datasets", "list_models", "list_recipes",
    "load", "load_dataset", "load_fashion_mnist", "load_image", "predict", "save_model", "summarize", "train",
]  # fmt: skip
