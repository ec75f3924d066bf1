"""Your own images as a data set: a folder of class folders, or the CSV form (a label and 784 pixels)."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from lenet.core.errors import DataError, ImageError
from lenet.core.text import clip, plural
from lenet.data.dataset import Dataset, tensor_hashes
from lenet.data.images import has_colour, opened, prepared
from lenet.data.registry import COLOUR_SIZE, IMAGE_SIZE, MAX_CLASSES, TENSOR_NAMES, data_digest

HELD_OUT = 0.2  # the test share of a folder or CSV file that comes without a test split
SPLIT_SEED = 0  # that split depends on this seed only, so every run of a study shares it
MAX_USER_IMAGES = 1_000_000
# A folder is read in colour (unless --channels says) when at least this share of its images have colour:
# a few coloured logos or stamps among grey scans do not triple every input.
FOLDER_COLOUR_SHARE = 0.1


@dataclass(frozen=True)
class FolderShape:
    """How a folder's images become tensors: `channels` 1 (grey) or 3 (RGB) and side `size`; None for
    either: inferred from the folder (colour where FOLDER_COLOUR_SHARE of its images have it; the side 28
    for grey, 32 for colour)."""

    channels: int | None = None
    size: int | None = None

    def sides(self) -> dict[int, int]:
        """The side each possible channel count gets: {1: S} or {3: S}, or both while undecided."""
        wanted = (self.channels,) if self.channels else (1, 3)
        return {c: self.size or (IMAGE_SIZE if c == 1 else COLOUR_SIZE) for c in wanted}


def load_folder(path: str, skip_bad: bool = False, shape: FolderShape = FolderShape()) -> Dataset:
    """PATH/CLASS/*.png (any format `lenet predict` reads), or PATH/train/CLASS/* and PATH/test/CLASS/*.

    Each image goes through `lenet.data.images.prepared`, the same preprocessing as
    `lenet predict`, in grey or colour and at the side `shape` gives (inferred where it gives
    none). Every problem is found before any is reported: unreadable files, links
    that lead out of the folder, empty and unbalanced classes all go into one error, so that
    one round of fixes is enough. With `skip_bad`, unreadable files (and links out of the
    folder) are left out instead and listed in the data set's `skipped`; an empty class is an
    error either way.
    """
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"folder:{path}: no such directory")
    problems = _Problems(root.resolve(), root.absolute())
    if (root / "train").is_dir() and (root / "test").is_dir():
        classes = _class_names(root / "train")
        if _class_names(root / "test") != classes:
            raise DataError(f"folder:{path}: train/ and test/ must hold the same class folders "
                            f"(train: {', '.join(classes)}; test: {', '.join(_class_names(root / 'test'))})")  # fmt: skip
        sides = shape.sides()
        train = _read_classes(root / "train", classes, problems, sides)
        test = _read_classes(root / "test", classes, problems, sides)
        problems.raise_any(f"folder:{path}", skip_bad)
        channels = shape.channels or _inferred_channels(train.coloured + test.coloured)
        (train_x, train_y, _), (test_x, test_y, test_sources) = train.split(channels, sides), test.split(channels, sides)
        source = f"{root} (train/ and test/)"
    else:
        classes = _class_names(root)
        sides = shape.sides()
        everything = _read_classes(root, classes, problems, sides)
        problems.raise_any(f"folder:{path}", skip_bad)
        channels = shape.channels or _inferred_channels(everything.coloured)
        (train_x, train_y, _), (test_x, test_y, test_sources) = _split(*everything.split(channels, sides))
        source = f"{root} (a random {HELD_OUT:.0%} held out as test, seed {SPLIT_SEED})"
    return _user_dataset(train_x, train_y, test_x, test_y, source, f"folder:{root.resolve()}", classes,
                         tuple(f"{path}: {why}" for path, why in problems.unreadable), test_sources)  # fmt: skip


def _user_dataset(train_x, train_y, test_x, test_y, source: str, name: str, classes: tuple[str, ...],
                  skipped: tuple[str, ...] = (), test_sources: tuple[str, ...] = ()) -> Dataset:  # fmt: skip
    """The data set, its description carrying the one digest of its tensors (DataSpec.sha256), and where
    each test image came from (`test_sources`: a file relative to the folder, or a CSV file and line)."""
    hashes = tensor_hashes(train_x, train_y, test_x, test_y)
    data = Dataset.from_tensors(train_x, train_y, test_x, test_y, source, hashes, name=name, classes=classes)
    return replace(data, spec=replace(data.spec, sha256=data_digest(hashes)), skipped=skipped,
                   test_sources=tuple(test_sources))  # fmt: skip


def _class_names(directory: Path) -> tuple[str, ...]:
    classes = tuple(sorted(p.name for p in directory.iterdir() if p.is_dir() and not p.name.startswith(".")))
    if len(classes) < 2:
        found = f"only {classes[0]!r}" if classes else "none"
        raise DataError(f"folder:{directory}: needs a sub-directory per class, at least two ({found} found)")
    if len(classes) > MAX_CLASSES:
        raise DataError(f"folder:{directory}: {len(classes):,} class folders; lenet takes at most {MAX_CLASSES}")
    return classes


MAX_LISTED = 10  # problems of each kind named in the one error; the rest are counted
OUTSIDE = "a link to outside the folder"


@dataclass
class _Problems:
    """What is wrong with a folder data set, gathered over all of it before anything is said."""

    root: Path  # resolved: every file read must lie under it
    given: Path  # as the user named it, to show files relative to
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (CLASS/FILE, why), in the order found
    empty: list[str] = field(default_factory=list)  # class folders without one readable image
    unbalanced: list[str] = field(default_factory=list)

    def bad(self, path: Path, why: str) -> None:
        self.unreadable.append((self.shown(path), why))

    def shown(self, path: Path) -> str:
        # Relative to the data set's folder: the folder is named once, at the start of the message.
        for base in (self.given, self.root):
            if path.absolute().is_relative_to(base):
                return str(path.absolute().relative_to(base))
        return str(path)

    def raise_any(self, what: str, skip_bad: bool) -> None:
        parts = []
        if self.unreadable and (not skip_bad or self.empty):  # with an empty class, they may say why it is
            parts.append(_unreadable(self.unreadable))
        if self.empty:
            parts.append(f"{plural(len(self.empty), 'class', 'classes')} without a readable image "
                         f"({_first(self.empty)})")  # fmt: skip
        if self.unbalanced and not self.empty:  # counts of a class that is missing its images mean little
            parts.append("; ".join(self.unbalanced) + "; balance the classes to within 10x")
        if not parts:
            return
        hint = ("; pass --skip-bad to leave the unreadable files out"
                if self.unreadable and not skip_bad and not self.empty else "")  # fmt: skip
        raise DataError(f"{what}: " + "; and ".join(parts) + hint)


MAX_REASONS = 5  # kinds of unreadable file named in the one error


def _first(names: list[str]) -> str:
    """The first MAX_LISTED names, and a count of the rest."""
    rest = len(names) - MAX_LISTED
    return ", ".join(names[:MAX_LISTED]) + (f", and {rest} more" if rest > 0 else "")


def _unreadable(found: list[tuple[str, str]]) -> str:
    """'14 unreadable files: 12 not a PNG... (a/0.png, ..., and 2 more); 2 a broken link (b/x.png, b/y.png)'."""
    by_reason: dict[str, list[str]] = {}
    for path, why in found:
        by_reason.setdefault(why, []).append(path)
    groups = [f"{len(paths)} {why} ({_first(paths)})" for why, paths in list(by_reason.items())[:MAX_REASONS]]
    unnamed = sum(len(paths) for paths in list(by_reason.values())[MAX_REASONS:])
    tail = f"; and {unnamed} more for other reasons" if unnamed else ""
    return f"{plural(len(found), 'unreadable file')}: " + "; ".join(groups) + tail


def _class_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if not p.name.startswith(".") and (p.is_file() or p.is_symlink()))


def _inferred_channels(coloured: list[bool]) -> int:
    return 3 if coloured and sum(coloured) >= FOLDER_COLOUR_SHARE * len(coloured) else 1


@dataclass(frozen=True)
class _Read:
    """A folder's images as read, before grey or colour is chosen: each image in every channel count asked for."""

    images: dict[int, list[torch.Tensor]]  # channels -> one uint8 [C, S, S] an image
    labels: torch.Tensor
    files: list[str]  # relative to the data set's folder
    coloured: list[bool]  # whether each image has colour

    def split(self, channels: int, sides: dict[int, int]) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
        """(images, labels, files), the images [N, C, S, S] in `channels` channels."""
        images = self.images[channels]
        side = sides[channels]
        stacked = torch.stack(images) if images else torch.empty(0, channels, side, side, dtype=torch.uint8)
        return stacked, self.labels, self.files


def _read_classes(directory: Path, classes: tuple[str, ...], problems: _Problems, sides: dict[int, int]) -> _Read:
    """The images (in each channel count in `sides`), their labels, their files and whether each has colour,
    class by class."""
    images: dict[int, list[torch.Tensor]] = {c: [] for c in sides}
    labels, files, coloured = [], [], []
    for label, name in enumerate(classes):
        folder, before = directory / name, len(labels)
        if not folder.resolve().is_relative_to(problems.root):
            problems.bad(folder, OUTSIDE)
        else:
            for f in _class_files(folder):
                if len(labels) >= MAX_USER_IMAGES:
                    raise DataError(f"folder:{directory}: over {MAX_USER_IMAGES:,} images; lenet holds a data set in memory")
                if (read := _read_one(f, problems, sides)) is not None:
                    for channels, image in read[0].items():
                        images[channels].append(image)
                    coloured.append(read[1])
                    labels.append(label)
                    files.append(problems.shown(f))
        if len(labels) == before:
            problems.empty.append(problems.shown(folder))
    counts = torch.bincount(torch.tensor(labels, dtype=torch.long), minlength=len(classes))
    if len(labels) and counts.min() and counts.max() > 10 * counts.min():
        worst = classes[int(counts.argmin())]
        where = "" if problems.shown(directory) == "." else f" in {problems.shown(directory)}/"
        problems.unbalanced.append(f"class {worst!r}{where} has {int(counts.min())} images "
                                   f"against {int(counts.max())} for the largest")  # fmt: skip
    return _Read(images, torch.tensor(labels, dtype=torch.long), files, coloured)


def _read_one(path: Path, problems: _Problems, sides: dict[int, int]) -> tuple[dict[int, torch.Tensor], bool] | None:
    """The image as uint8 [C, S, S] for each channel count C in `sides`, and whether it has colour; or None
    with the reason noted.

    A link is followed only within the data set's folder: a data set is what its folder holds,
    and a link out of it (to a private file, or a whole other tree) is never read.
    """
    if path.is_symlink() and not path.exists():
        problems.bad(path, "a broken link")
        return None
    if not path.resolve().is_relative_to(problems.root):
        problems.bad(path, OUTSIDE)
        return None
    if not path.resolve().is_file():  # a link to a folder, or to a pipe that would block the read
        problems.bad(path, "a link to something other than a file")
        return None
    try:
        with opened(path, str(path)) as img:
            return {c: prepared(img, c, side) for c, side in sides.items()}, len(sides) > 1 and has_colour(img)
    except ImageError as e:
        problems.bad(path, str(e).removeprefix(f"{path}: "))
        return None


def _split(images: torch.Tensor, labels: torch.Tensor,
           sources: list[str]) -> tuple[tuple[torch.Tensor, torch.Tensor, list[str]], ...]:  # fmt: skip
    """(train, test), each (images, labels, sources): HELD_OUT of the images, drawn with SPLIT_SEED, as test."""
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(SPLIT_SEED))
    n_test = max(1, round(HELD_OUT * len(labels)))
    test, train = order[:n_test].sort().values, order[n_test:].sort().values
    return tuple((images[part], labels[part], [sources[i] for i in part.tolist()]) for part in (train, test))


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
        (train_x, train_y, _), (test_x, test_y, test_sources) = _read_csv(train_files[0]), _read_csv(test_files[0])
        source, folder = f"{train_files[0]} and {test_files[0]}", root
    elif root.is_file():
        (train_x, train_y, _), (test_x, test_y, test_sources) = _split(*_read_csv(root))
        source, folder = f"{root} (a random {HELD_OUT:.0%} held out as test, seed {SPLIT_SEED})", root.parent
    else:
        raise DataError(f"csv:{path}: no such file or directory")
    count = int(max(train_y.max(), test_y.max())) + 1
    classes = _csv_classes(folder / "classes.txt", count)
    return _user_dataset(train_x, train_y, test_x, test_y, source, f"csv:{root.resolve()}", classes,
                         test_sources=test_sources)  # fmt: skip


def _read_csv(path: Path) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """The images, their labels and where each came from ("NAME.csv, line N")."""
    pixels = IMAGE_SIZE * IMAGE_SIZE
    rows: list[list[int]] = []
    lines: list[str] = []
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
                # Bounded here, before any tensor or class name is made of it: a label of 2**70
                # overflowed int64, and one of 10**12 asked for that many class names.
                if not 0 <= values[0] < MAX_CLASSES:
                    label = clip(row[0].strip(), 27)  # a label of 5,000 digits is shown by its first 24
                    raise DataError(f"{path}, line {line}: label {label} is outside 0-{MAX_CLASSES - 1} "
                                    f"(lenet takes at most {MAX_CLASSES} classes)")  # fmt: skip
                if not all(0 <= v <= 255 for v in values[1:]):
                    raise DataError(f"{path}, line {line}: a pixel outside 0-255")
                rows.append(values)
                lines.append(f"{path.name}, line {line}")
                if len(rows) > MAX_USER_IMAGES:
                    raise DataError(f"{path}: over {MAX_USER_IMAGES:,} rows; lenet holds a data set in memory")
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"{path}: cannot read as CSV ({e})") from None
    if len(rows) < 2:
        raise DataError(f"{path}: {len(rows)} image rows; a data set needs more")
    table = torch.tensor(rows, dtype=torch.int64)
    if len(table[:, 0].unique()) < 2:
        raise DataError(f"{path}: every row has label {int(table[0, 0])}; a classifier needs two classes or more")
    return table[:, 1:].to(torch.uint8).reshape(-1, IMAGE_SIZE, IMAGE_SIZE), table[:, 0], lines


def _csv_classes(path: Path, count: int) -> tuple[str, ...]:
    if not path.is_file():
        return tuple(str(i) for i in range(count))
    names = tuple(line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    if len(names) != count:
        raise DataError(f"{path}: {len(names)} class names for labels 0 to {count - 1}")
    return names

