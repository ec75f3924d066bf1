"""The data-set registry: what lenet knows about each data set, beside the model registry.

An IDX data set is one table entry: its class names, its four files with their published
SHA-256s, and its mirrors. An archive data set (CIFAR-10) is one file, its SHA-256 and size, and
the names of the record files inside it (data/cifar.py reads those). A data set's pixel mean and
std (for the models that normalise their input) are measured on its training images when it is
loaded (data/dataset.py's `measured_spec`). The one exception is the default data set's, which a
model made without any data (`create_model()`) normalises by: they are in its entry (`stats`),
DEFAULT_SPEC is made from it, and tests/test_datasets.py checks them against the measured ones.
Every other module asks a loaded data set, or a loaded model, for class names and statistics; none
holds a data set's constants.
The file formats themselves are data/idx.py's and data/cifar.py's.

`folder:PATH` (one sub-directory per class) and `csv:PATH` (a label and 784 pixels per row)
name a user's own images; their class names come from the files.
"""

from __future__ import annotations

import difflib
import hashlib
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from lenet.core.errors import DataError, LenetError, UnknownDataset, short_repr

IMAGE_SIZE = 28  # the MNIST family's side, the tutorial's input: a grey data set's default
COLOUR_SIZE = 32  # CIFAR-10's side, and the pytorch.org classifier tutorial's input: a colour folder's default
CHANNELS = (1, 3)  # grey or RGB
# The sides an image may have: LeNet's two 5x5 convolutions and 2x2 pools leave nothing of a side under
# 16 (padding 0), and a side over 128 makes the first fully connected layer and the data set in memory large
# (50,000 RGB images of 128x128 are 2.5 GB) for a network that sees 5x5 windows.
MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 16, 128
MAX_CLASSES = 1000  # the most classes a data set (and so a model's output) may have
USER_KINDS = ("folder", "csv")  # folder:PATH and csv:PATH name a user's own data, never a registry entry


@dataclass(frozen=True)
class IdxFile:
    stem: str  # file name without .gz
    sha256: str  # of the decompressed bytes, which do not depend on how the file was gzipped
    gz_sha256: str = ""  # of the .gz file as published, where only that is published


@dataclass(frozen=True)
class DataSpec:
    """What a trained model must know of its data: it travels in checkpoints and config.json."""

    name: str
    classes: tuple[str, ...]
    # Of the [0, 1] training pixels, to 4 places: models with batch norm normalise by these. A number for
    # a grey data set, one per channel (R, G, B) for a colour one.
    mean: float | tuple[float, ...]
    std: float | tuple[float, ...]
    image_size: int = IMAGE_SIZE  # the side S of its [C, S, S] images
    # For a user's own data (folder:, csv:): one SHA-256 of its four tensors (`data_digest`), so the
    # exact images and split the model learned from can be recognised. Empty for a registry data set,
    # whose files are checked against their published hashes instead.
    sha256: str = ""
    channels: int = 1  # 1 grey, 3 RGB

    def __post_init__(self) -> None:
        for name in ("classes", "mean", "std"):
            if isinstance(getattr(self, name), list):
                object.__setattr__(self, name, tuple(getattr(self, name)))
        if not isinstance(self.name, str) or not self.name:
            raise LenetError(f"a data set's name is a non-empty string, not {short_repr(self.name)}")
        if not (isinstance(self.classes, tuple) and 1 <= len(self.classes) <= MAX_CLASSES
                and all(isinstance(c, str) and 0 < len(c) <= 200 for c in self.classes)):  # fmt: skip
            raise LenetError(f"a data set's classes are 1 to {MAX_CLASSES} names, not {short_repr(self.classes)}")
        if not isinstance(self.sha256, str) or not re.fullmatch(r"(|[0-9a-f]{64})", self.sha256):
            raise LenetError(f"a data set's sha256 is 64 hexadecimal digits or empty, not {short_repr(self.sha256)}")
        if isinstance(self.channels, bool) or self.channels not in CHANNELS:
            raise LenetError(f"a data set's channels are 1 (grey) or 3 (RGB), not {short_repr(self.channels)}")
        side = self.image_size
        if isinstance(side, bool) or not isinstance(side, int) or not MIN_IMAGE_SIZE <= side <= MAX_IMAGE_SIZE:
            raise LenetError(f"a data set's image side is a whole number of pixels from {MIN_IMAGE_SIZE} to "
                             f"{MAX_IMAGE_SIZE}, not {short_repr(side)}")  # fmt: skip
        for name in ("mean", "std"):
            value = getattr(self, name)
            values = value if isinstance(value, tuple) and self.channels > 1 else (value,)
            if len(values) != self.channels or not all(_is_fraction(v) for v in values):
                per = "a number" if self.channels == 1 else f"{self.channels} numbers, one per channel,"
                raise LenetError(f"a data set's {name} is {per} in [0, 1], not {short_repr(value)}")
        if 0 in self.channel_stds:
            raise LenetError("a data set's std is positive")

    @property
    def channel_means(self) -> tuple[float, ...]:
        """The mean of each channel, for grey and colour data sets alike."""
        return self.mean if isinstance(self.mean, tuple) else (self.mean,)

    @property
    def channel_stds(self) -> tuple[float, ...]:
        return self.std if isinstance(self.std, tuple) else (self.std,)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """[C, S, S]: one image as the model takes it."""
        return (self.channels, self.image_size, self.image_size)

    def to_dict(self) -> dict[str, Any]:
        # Without an empty sha256 or one channel, a grey registry model's description is what lenet wrote
        # before either existed, so an older lenet still reads its checkpoints (its from_dict takes no other key).
        defaults = {"sha256": "", "channels": 1}
        return {k: v for k, v in asdict(self).items() if k not in defaults or v != defaults[k]}

    @classmethod
    def from_dict(cls, d: Any) -> DataSpec:
        if not isinstance(d, dict) or set(d) - {f.name for f in fields(cls)}:
            raise LenetError(f"a data set description is a mapping of name, classes, mean, std, not {short_repr(d)}")
        try:
            return cls(**d)
        except TypeError as e:
            raise LenetError(f"incomplete data set description ({e})") from None


def _is_fraction(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and 0 <= value <= 1


@dataclass(frozen=True)
class IdxDataset:
    """A data set published as four IDX files."""

    name: str
    classes: tuple[str, ...]
    files: dict[str, IdxFile]  # train_images, train_labels, test_images, test_labels
    mirrors: tuple[str, ...]
    how_to_get: str  # one line for the error when the files cannot be had
    description: str
    system_dir: str | None = None  # where a distribution package installs the files
    # (mean, std) of its training pixels in [0, 1], to 4 places as measured_spec gives them: only where
    # a model is made without loading the data set (DEFAULT_SPEC); loading always measures them.
    stats: tuple[float, float] | None = None


@dataclass(frozen=True)
class ArchiveDataset:
    """A data set published as one archive of record files (CIFAR-10's binary version), read in memory."""

    name: str
    classes: tuple[str, ...]
    archive: str  # the file name, as on the mirrors and in the cache
    sha256: str  # of the archive as published
    size: int  # in bytes, as published: named when a file is too large to be it
    train_members: tuple[str, ...]  # the record files inside, in the order their records are taken
    test_members: tuple[str, ...]
    meta_member: str  # the class names, one a line, checked against `classes`
    mirrors: tuple[str, ...]
    how_to_get: str
    description: str
    system_dir: str | None = None


RegistryEntry = IdxDataset | ArchiveDataset


def _files(*hashes: tuple[str, str]) -> dict[str, IdxFile]:
    stems = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    keys = ("train_images", "train_labels", "test_images", "test_labels")
    return {key: IdxFile(stem, raw, gz) for key, stem, (raw, gz) in zip(keys, stems, hashes)}


# A file is accepted when its decompressed bytes have `sha256` or, failing that, the .gz file
# as published has `gz_sha256`: distributions recompress (Debian's Fashion-MNIST .gz files
# differ from Zalando's), while for KMNIST only the .gz hashes are published.
DATASETS: dict[str, RegistryEntry] = {
    "fashion-mnist": IdxDataset(
        "fashion-mnist",
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        _files(
            ("c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888", ""),
            ("bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9", ""),
            ("5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b", ""),
            ("0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34", ""),
        ),
        ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
         "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/"),
        how_to_get="pass --data-dir DIR holding the four .gz files from github.com/zalandoresearch/fashion-mnist, "
                   "or on Debian/Ubuntu: apt-get install dataset-fashion-mnist",
        description="Zalando's clothing images, the tutorial's data set (the default)",
        system_dir="/usr/share/datasets/fashion-mnist",
        stats=(0.2860, 0.3530),
    ),
    "mnist": IdxDataset(
        "mnist",
        tuple("0123456789"),
        _files(
            ("ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db", "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
            ("65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5", "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
            ("0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7", "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
            ("ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2", "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
        ),  # fmt: skip
        ("https://ossci-datasets.s3.amazonaws.com/mnist/", "https://storage.googleapis.com/cvdf-datasets/mnist/"),
        how_to_get="pass --data-dir DIR holding the four .gz files of the MNIST database (yann.lecun.com/exdb/mnist)",
        description="handwritten digits, where LeNet began",
    ),
    "kmnist": IdxDataset(
        "kmnist",
        ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
        _files(
            ("", "51467d22d8cc72929e2a028a0428f2086b092bb31cfb79c69cc0a90ce135fde4"),
            ("", "e38f9ebcd0f3ebcdec7fc8eabdcdaef93bb0df8ea12bee65224341c8183d8e17"),
            ("", "edd7a857845ad6bb1d0ba43fe7e794d164fe2dce499a1694695a792adfac43c5"),
            ("", "20bb9a0ef54c7db3efc55a92eef5582c109615df22683c380526788f98e42a1c"),
        ),
        ("http://codh.rois.ac.jp/kmnist/dataset/kmnist/",),
        how_to_get="pass --data-dir DIR holding the four .gz files (MNIST format) from github.com/rois-codh/kmnist",
        description="Kuzushiji-MNIST: ten cursive Japanese hiragana",
    ),
    "cifar10": ArchiveDataset(
        "cifar10",
        ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
        archive="cifar-10-binary.tar.gz",
        # The authors publish only an MD5 (c32a1d4ab5d03f1284b67883e8d87530, on www.cs.toronto.edu/~kriz/cifar.html).
        # This SHA-256 and size are tensorflow/datasets' (tensorflow_datasets/url_checksums/cifar10.txt), and the
        # same in Julia's MLDatasets and GoMLX's downloader: not measured here, where the archive cannot be fetched.
        sha256="c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd",
        size=170_052_171,
        train_members=tuple(f"cifar-10-batches-bin/data_batch_{i}.bin" for i in range(1, 6)),
        test_members=("cifar-10-batches-bin/test_batch.bin",),
        meta_member="cifar-10-batches-bin/batches.meta.txt",
        mirrors=("https://www.cs.toronto.edu/~kriz/",),
        how_to_get="pass --data-dir DIR holding cifar-10-binary.tar.gz (the binary version, not the Python one) "
                   "from www.cs.toronto.edu/~kriz/cifar.html",
        description="CIFAR-10: 32x32 colour photos of ten kinds of vehicle and animal (official binary archive)",
    ),
}
DEFAULT = "fashion-mnist"
# A user's own images: named by a kind and a path (data.load_dataset reads them), not registered.
USER_DATA = {
    "folder:PATH": "your images, a sub-directory per class (PATH/CLASS/*, or PATH/train/CLASS/* and PATH/test/CLASS/*)",
    "csv:PATH": "a label and 784 pixels per row (a file, or a directory with *train*.csv and *test*.csv)",
}
# The default data set's measured statistics, for a model created outside any data set (create_model()).
DEFAULT_SPEC = DataSpec(DEFAULT, DATASETS[DEFAULT].classes, *DATASETS[DEFAULT].stats)  # type: ignore[union-attr,misc]


def dataset_entry(name: str) -> RegistryEntry:
    return DATASETS[dataset_name(name)]


def _folded(name: str) -> str:
    """A registry name as people type it: Fashion-MNIST, fashion_mnist and FashionMNIST are fashion-mnist."""
    return re.sub(r"[^0-9a-z]", "", name.lower())


def dataset_name(name: str) -> str:
    """The data set a user means by `name`: a registry name in its own spelling (any case, with '-', '_', ' '
    or nothing between its words), or folder:PATH or csv:PATH as given. Anything else is an
    UnknownDataset (a usage error) that says what was probably meant: a directory or a .csv file that
    exists but lacks folder: or csv:, or the nearest registry name."""
    if is_user_data(name):
        return name
    for registered in DATASETS:
        if _folded(name) == _folded(registered):
            return registered
    path = Path(name)
    if name and path.is_dir():
        raise UnknownDataset(f"{name!r} is a directory, not a data-set name: did you mean folder:{name}?")
    if name and path.is_file() and path.suffix.lower() == ".csv":
        raise UnknownDataset(f"{name!r} is a CSV file, not a data-set name: did you mean csv:{name}?")
    folded = {_folded(registered): registered for registered in DATASETS}
    near = difflib.get_close_matches(_folded(name), folded, n=1)
    hint = f"did you mean {folded[near[0]]}? " if near else ""
    raise UnknownDataset(f"unknown data set {short_repr(name)}; {hint}choose from {', '.join(DATASETS)}, "
                         f"{' or '.join(USER_DATA)}")  # fmt: skip


def default_spec() -> DataSpec:
    return DEFAULT_SPEC


def list_datasets() -> dict[str, str]:
    return {name: entry.description for name, entry in DATASETS.items()}


def is_user_data(name: str) -> bool:
    """Whether a data-set name is folder:PATH or csv:PATH: a path on this machine, not a registry entry."""
    return name.split(":", 1)[0] in USER_KINDS and ":" in name


def shown_name(name: str) -> str:
    """A data-set name fit to show to others (a server's /model, an exported file): a user's own
    data set by its kind and last path component only (folder:shapes), never the whole path."""
    if not is_user_data(name):
        return name
    kind, path = name.split(":", 1)
    return f"{kind}:{path.rstrip('/').rsplit('/', 1)[-1] or '/'}"


TENSOR_NAMES = ("train_images", "train_labels", "test_images", "test_labels")


def data_digest(hashes: dict[str, str]) -> str:
    """One SHA-256 for a data set, from the SHA-256s of its four tensors (config.json's data.sha256):
    it changes with any image, label or the split between train and test."""
    return hashlib.sha256(" ".join(f"{k}:{hashes.get(k, '')}" for k in TENSOR_NAMES).encode()).hexdigest()
