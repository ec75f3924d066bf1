"""Your own images as a data set: a folder of class folders, or the CSV form (a label and 784 pixels)."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import torch

from lenet.core.errors import DataError, ImageError
from lenet.data.dataset import Dataset
from lenet.data.images import load_image
from lenet.data.registry import IMAGE_SIZE

HELD_OUT = 0.2  # the test share of a folder or CSV file that comes without a test split
SPLIT_SEED = 0  # that split depends on this seed only, so every run of a study shares it
MAX_USER_IMAGES = 1_000_000


def load_folder(path: str) -> Dataset:
    """PATH/CLASS/*.png (any format `lenet predict` reads), or PATH/train/CLASS/* and PATH/test/CLASS/*.

    Each image goes through `lenet.data.images.load_image`, the same preprocessing as
    `lenet predict`. An unreadable image stops the load, naming it: a data set with a silent
    hole in it would train on something other than what the folder holds.
    """
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"folder:{path}: no such directory")
    if (root / "train").is_dir() and (root / "test").is_dir():
        classes = _class_names(root / "train")
        if _class_names(root / "test") != classes:
            raise DataError(f"folder:{path}: train/ and test/ must hold the same class folders "
                            f"(train: {', '.join(classes)}; test: {', '.join(_class_names(root / 'test'))})")  # fmt: skip
        (train_x, train_y), (test_x, test_y) = _read_classes(root / "train", classes), _read_classes(root / "test", classes)
        source = f"{root} (train/ and test/)"
    else:
        classes = _class_names(root)
        (train_x, train_y), (test_x, test_y) = _split(*_read_classes(root, classes))
        source = f"{root} (a random {HELD_OUT:.0%} held out as test, seed {SPLIT_SEED})"
    return Dataset.from_tensors(train_x, train_y, test_x, test_y, source, _tensor_hashes(train_x, train_y, test_x, test_y),
                                name=f"folder:{root.resolve()}", classes=classes)  # fmt: skip


def _class_names(directory: Path) -> tuple[str, ...]:
    classes = tuple(sorted(p.name for p in directory.iterdir() if p.is_dir() and not p.name.startswith(".")))
    if len(classes) < 2:
        found = f"only {classes[0]!r}" if classes else "none"
        raise DataError(f"folder:{directory}: needs a sub-directory per class, at least two ({found} found)")
    return classes


def _read_classes(directory: Path, classes: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = [], []
    for label, name in enumerate(classes):
        files = sorted(p for p in (directory / name).iterdir() if p.is_file() and not p.name.startswith("."))
        if not files:
            raise DataError(f"folder:{directory}: class {name!r} has no images")
        if len(images) + len(files) > MAX_USER_IMAGES:
            raise DataError(f"folder:{directory}: over {MAX_USER_IMAGES:,} images; lenet holds a data set in memory")
        try:
            images += [load_image(f)[0] for f in files]
        except ImageError as e:
            raise DataError(f"folder:{directory}: {e}") from None
        labels += [label] * len(files)
    counts = torch.bincount(torch.tensor(labels), minlength=len(classes))
    if counts.max() > 10 * counts.min():
        worst = classes[int(counts.argmin())]
        raise DataError(f"folder:{directory}: class {worst!r} has {int(counts.min())} images against "
                        f"{int(counts.max())} for the largest; balance the classes to within 10x")  # fmt: skip
    return torch.stack(images), torch.tensor(labels)


def _split(images: torch.Tensor, labels: torch.Tensor) -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(SPLIT_SEED))
    n_test = max(1, round(HELD_OUT * len(labels)))
    test, train = order[:n_test].sort().values, order[n_test:].sort().values
    return (images[train], labels[train]), (images[test], labels[test])


def _tensor_hashes(*tensors: torch.Tensor) -> dict[str, str]:
    names = ("train_images", "train_labels", "test_images", "test_labels")
    return {name: hashlib.sha256(t.contiguous().numpy().tobytes()).hexdigest() for name, t in zip(names, tensors)}


def load_csv(path: str) -> Dataset:
    """The CSV form of these data sets (as on Kaggle): a label column, then 784 pixel columns.

    PATH is a file (a random 20% held out as test, seed 0) or a directory with one *train*.csv
    and one *test*.csv. A header row is skipped; class names are the labels, or the lines of a
    classes.txt beside the files.
    """
    root = Path(path)
    if root.is_dir():
        train_files, test_files = sorted(root.glob("*train*.csv")), sorted(root.glob("*test*.csv"))
        if len(train_files) != 1 or len(test_files) != 1:
            raise DataError(f"csv:{path}: a directory needs exactly one *train*.csv and one *test*.csv")
        (train_x, train_y), (test_x, test_y) = _read_csv(train_files[0]), _read_csv(test_files[0])
        source, folder = f"{train_files[0]} and {test_files[0]}", root
    elif root.is_file():
        (train_x, train_y), (test_x, test_y) = _split(*_read_csv(root))
        source, folder = f"{root} (a random {HELD_OUT:.0%} held out as test, seed {SPLIT_SEED})", root.parent
    else:
        raise DataError(f"csv:{path}: no such file or directory")
    count = int(max(train_y.max(), test_y.max())) + 1
    classes = _csv_classes(folder / "classes.txt", count)
    return Dataset.from_tensors(train_x, train_y, test_x, test_y, source, _tensor_hashes(train_x, train_y, test_x, test_y),
                                name=f"csv:{root.resolve()}", classes=classes)  # fmt: skip


def _read_csv(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    pixels = IMAGE_SIZE * IMAGE_SIZE
    rows: list[list[int]] = []
    try:
        with open(path, newline="", encoding="utf-8") as f:
            for line, row in enumerate(csv.reader(f), start=1):
                if line == 1 and row and not row[0].strip().lstrip("-").isdigit():
                    continue  # a header: label,pixel1,...,pixel784
                if len(row) != 1 + pixels:
                    raise DataError(f"{path}, line {line}: {len(row)} columns, expected a label and {pixels} pixels")
                try:
                    values = [int(v) for v in row]
                except ValueError:
                    raise DataError(f"{path}, line {line}: not whole numbers") from None
                if values[0] < 0 or not all(0 <= v <= 255 for v in values[1:]):
                    raise DataError(f"{path}, line {line}: a label below 0 or a pixel outside 0-255")
                rows.append(values)
                if len(rows) > MAX_USER_IMAGES:
                    raise DataError(f"{path}: over {MAX_USER_IMAGES:,} rows; lenet holds a data set in memory")
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"{path}: cannot read as CSV ({e})") from None
    if len(rows) < 2:
        raise DataError(f"{path}: {len(rows)} image rows; a data set needs more")
    table = torch.tensor(rows, dtype=torch.int64)
    if len(table[:, 0].unique()) < 2:
        raise DataError(f"{path}: every row has label {int(table[0, 0])}; a classifier needs two classes or more")
    return table[:, 1:].to(torch.uint8).reshape(-1, IMAGE_SIZE, IMAGE_SIZE), table[:, 0]


def _csv_classes(path: Path, count: int) -> tuple[str, ...]:
    if not path.is_file():
        return tuple(str(i) for i in range(count))
    names = tuple(line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    if len(names) != count:
        raise DataError(f"{path}: {len(names)} class names for labels 0 to {count - 1}")
    return names

