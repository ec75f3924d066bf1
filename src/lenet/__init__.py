"""lenet: the PyTorch tutorial's LeNet on Fashion-MNIST, as a real tool.

    from lenet import load_dataset, create_model, train, TrainConfig, load
"""

__version__ = "0.1.0"

from .checkpoint import load, save_model  # noqa: E402
from .data import Dataset, FashionMNIST, load_dataset, load_fashion_mnist  # noqa: E402
from .datasets import DataSpec, list_datasets  # noqa: E402
from .views import Classifier, Views  # noqa: E402
from .errors import CheckpointError, DataError, ImageError, LenetError  # noqa: E402
from .metrics import Evaluation, evaluate  # noqa: E402
from .models import LeNet, LeNetConfig, create_model, list_models, summarize  # noqa: E402
from .inference import Prediction, load_image, predict  # noqa: E402
from .recipes import RECIPES, Recipe, get_recipe, list_recipes  # noqa: E402
from .train import RunResult, TrainConfig, train  # noqa: E402

__all__ = [
    "CheckpointError", "Classifier", "DataError", "DataSpec", "Dataset", "Evaluation", "FashionMNIST", "ImageError",
    "LeNet", "LeNetConfig", "LenetError", "Prediction", "RECIPES", "Recipe", "RunResult",
    "TrainConfig", "Views", "create_model", "evaluate", "get_recipe", "list_datasets", "list_models", "list_recipes",
    "load", "load_dataset", "load_fashion_mnist", "load_image", "predict", "save_model", "summarize", "train",
]  # fmt: skip
