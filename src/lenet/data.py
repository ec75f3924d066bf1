"""Data sets on disk: the IDX format, where the files come from, checksums, your own folders and
CSV files, and device batches. What each data set is (classes, files, mirrors) is datasets.py's.

The whole set is decoded once into uint8 tensors and kept on the training device; a batch
is an index slice of those tensors, never a per-sample Python loop or a DataLoader worker.

Where an IDX data set's files are looked for, in order (the first directory holding all four wins):
  1. the `data_dir` argument (`--data-dir`), which must exist,
  2. the directory in the environment variable LENET_DATA_DIR, which must exist,
  3. the user cache directory, $XDG_CACHE_HOME/lenet/NAME (~/.cache/lenet/NAME),
  4. /usr/share/datasets/NAME (Debian's package `dataset-fashion-mnist` for Fashion-MNIST),
  5. otherwise the missing files are downloaded from the data set's mirrors (LENET_MIRRORS
     overrides them, comma-separated) into the first of 1-3 that was given.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import os
import struct
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from .datasets import DATASETS, DEFAULT, IMAGE_SIZE, DataSpec, IdxDataset, IdxFile, dataset_entry
from .errors import DataError, ImageError
from .files import atomic_open

SYSTEM_DIR = Path("/usr/share/datasets")  # Debian installs data sets in sub-directories here
# The largest file decompresses to 47,040,016 bytes; anything much bigger is not ours.
MAX_IDX_BYTES = 64 * 2**20

# IDX: two zero bytes, a type code (0x08 = unsigned byte) and the number of dimensions.
_IDX_UBYTE = 0x08


# --- the IDX format ------------------------------------------------------------------


def parse_idx(raw: bytes, name: str = "IDX data") -> torch.Tensor:
    """Decode IDX bytes holding unsigned bytes into a uint8 tensor of the stored shape."""
    if len(raw) < 4:
        raise DataError(f"{name}: truncated, only {len(raw)} bytes (no IDX header)")
    zero, dtype, ndim = raw[0:2], raw[2], raw[3]
    if zero != b"\x00\x00" or dtype != _IDX_UBYTE or not 1 <= ndim <= 3:
        raise DataError(f"{name}: bad magic number 0x{raw[:4].hex()} (not an IDX file of unsigned bytes)")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{name}: truncated header ({len(raw)} bytes, need {header})")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    if max(shape) > MAX_IDX_BYTES:  # no file we read holds that many; with a zero beside it, no tensor has it
        raise DataError(f"{name}: the header declares dimensions {list(shape)}, over the limit of {MAX_IDX_BYTES}")
    expected = header + _prod(shape)
    if len(raw) != expected:
        problem = "truncated" if len(raw) < expected else "has trailing bytes"
        raise DataError(f"{name}: {problem}: {len(raw)} bytes, the header {list(shape)} needs {expected}")
    if expected == header:  # no elements (a zero dimension); frombuffer refuses an empty buffer
        return torch.empty(shape, dtype=torch.uint8)
    return torch.frombuffer(bytearray(memoryview(raw)[header:]), dtype=torch.uint8).reshape(shape)  # one copy


def _prod(shape: Sequence[int]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def idx_bytes(array: torch.Tensor) -> bytes:
    """`array` (values 0-255) as the bytes of an uncompressed IDX file of unsigned bytes: parse_idx's inverse."""
    header = b"\x00\x00\x08" + bytes([array.dim()]) + struct.pack(f">{array.dim()}I", *array.shape)
    return header + array.cpu().to(torch.uint8).numpy().tobytes()


def read_idx_bytes(path: Path) -> bytes:
    """The decompressed bytes of a gzipped or raw IDX file, refusing decompression bombs."""
    try:
        with open(path, "rb") as f:
            gzipped = f.read(2) == b"\x1f\x8b"
        opener = gzip.open if gzipped else open
        with opener(path, "rb") as f:
            raw = f.read(MAX_IDX_BYTES + 1)
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path}: cannot read ({e})") from None
    if len(raw) > MAX_IDX_BYTES:
        raise DataError(f"{path}: decompresses to more than {MAX_IDX_BYTES} bytes; not an IDX file of ours")
    return raw


def read_idx(path: str | os.PathLike) -> torch.Tensor:
    path = Path(path)
    return parse_idx(read_idx_bytes(path), str(path))


# --- the data set ---------------------------------------------------------------------


@dataclass
class Dataset:
    """The four tensors, uint8 images of shape [N, 1, 28, 28] and int64 labels, and what they are."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    source: str  # where the files were read from
    sha256: dict[str, str]
    spec: DataSpec = None  # type: ignore[assignment]  # name, classes, mean, std; measured when None

    def __post_init__(self) -> None:
        if self.spec is None:
            self.spec = measured_spec(DEFAULT, DATASETS[DEFAULT].classes, self.train_images)

    @classmethod
    def from_tensors(cls, train_images, train_labels, test_images, test_labels, source: str, sha256: dict[str, str],
                     name: str, classes: tuple[str, ...]) -> Dataset:  # fmt: skip
        """Check that decoded tensors ([N, 28, 28] images, [N] labels) fit together; shape them for training."""
        for split, images, labels in (("train", train_images, train_labels), ("test", test_images, test_labels)):
            if images.dim() != 3 or tuple(images.shape[1:]) != (IMAGE_SIZE, IMAGE_SIZE):
                raise DataError(f"{split} images have shape {list(images.shape)}, expected [N, 28, 28]")
            if labels.dim() != 1 or len(labels) != len(images):
                raise DataError(f"{split} has {len(images)} images but {labels.numel()} labels")
            if len(labels) and int(labels.max()) >= len(classes):
                raise DataError(f"{split} labels go up to {int(labels.max())}; {name} has {len(classes)} classes")
        spec = measured_spec(name, classes, train_images)
        return cls(train_images.unsqueeze(1), train_labels.long(), test_images.unsqueeze(1), test_labels.long(),
                   source, sha256, spec)  # fmt: skip

    def to(self, device: torch.device | str) -> Dataset:
        move = lambda t: t.to(device, non_blocking=True)  # noqa: E731
        return replace(self, train_images=move(self.train_images), train_labels=move(self.train_labels),
                       test_images=move(self.test_images), test_labels=move(self.test_labels))  # fmt: skip


FashionMNIST = Dataset  # its name while Fashion-MNIST was the only data set


def measured_spec(name: str, classes: tuple[str, ...], train_images: torch.Tensor) -> DataSpec:
    """The data set's description with the mean and std of its training pixels in [0, 1], to 4 places
    (Fashion-MNIST: 0.2860 and 0.3530, MNIST: 0.1307 and 0.3081)."""
    if not train_images.numel():
        return DataSpec(name, tuple(classes), 0.5, 0.5)
    # From the 256-bin histogram of the uint8 pixels: exact, where the pixels as float64 took 750 MB.
    counts = torch.bincount(train_images.flatten(), minlength=256).double()
    values = torch.arange(256, dtype=torch.float64) / 255
    n = counts.sum()
    mean = (counts * values).sum() / n
    std = ((counts * (values - mean) ** 2).sum() / (n - 1).clamp(min=1)).sqrt()  # Bessel's, as Tensor.std
    return DataSpec(name, tuple(classes), round(mean.item(), 4), max(round(std.item(), 4), 1e-4))


def load_dataset(
    name: str = DEFAULT,
    data_dir: str | os.PathLike | None = None,
    device: torch.device | str = "cpu",
    download: bool = True,
) -> Dataset:
    """Find (or download), verify and decode a data set onto `device`: a registry name
    (fashion-mnist, mnist, kmnist), folder:PATH or csv:PATH."""
    if name.startswith("folder:"):
        return load_folder(name.removeprefix("folder:")).to(device)
    if name.startswith("csv:"):
        return load_csv(name.removeprefix("csv:")).to(device)
    entry = dataset_entry(name)
    directory = find_or_download(entry, data_dir, download)
    tensors, hashes = {}, {}
    for key, spec in entry.files.items():
        path = _file_in(directory, spec.stem)
        assert path is not None
        raw = read_idx_bytes(path)
        hashes[spec.stem] = verified_digest(path, raw, spec, entry)
        tensors[key] = parse_idx(raw, str(path))
    return Dataset.from_tensors(**tensors, source=str(directory), sha256=hashes, name=entry.name,
                                classes=entry.classes).to(device)  # fmt: skip


def load_fashion_mnist(
    data_dir: str | os.PathLike | None = None, device: torch.device | str = "cpu", download: bool = True
) -> Dataset:
    return load_dataset(DEFAULT, data_dir, device, download)


def verified_digest(path: Path, raw: bytes, spec: IdxFile, entry: IdxDataset) -> str:
    """The SHA-256 of the decompressed bytes, once the file is known to be the published one."""
    digest = hashlib.sha256(raw).hexdigest()
    if spec.sha256 and digest == spec.sha256:
        return digest
    if spec.gz_sha256 and hashlib.sha256(path.read_bytes()).hexdigest() == spec.gz_sha256:
        return digest
    known = spec.sha256 or spec.gz_sha256
    raise DataError(
        f"{path}: SHA-256 {digest[:16]}... is not the known {entry.name} file ({known[:16]}...); "
        "delete it and run again to fetch a good copy"
    )


# --- where the files are --------------------------------------------------------------


def cache_dir(name: str = DEFAULT) -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "lenet" / name


def candidate_dirs(entry: IdxDataset, data_dir: str | os.PathLike | None = None) -> list[tuple[str, Path]]:
    """The places looked in, in order, each with how it was chosen. A directory the user names must exist."""
    places = []
    for label, given in (("--data-dir", data_dir), ("$LENET_DATA_DIR", os.environ.get("LENET_DATA_DIR") or None)):
        if given is not None:
            if not Path(given).is_dir():
                raise DataError(f"{label} {given}: no such directory (create it first to download {entry.name} there)")
            places.append((label, Path(given)))
    places.append(("user cache", cache_dir(entry.name)))
    places.append(("system", SYSTEM_DIR / entry.name))
    return places


def _file_in(directory: Path, stem: str) -> Path | None:
    for name in (f"{stem}.gz", stem):
        if (directory / name).is_file():
            return directory / name
    return None


def find_or_download(entry: IdxDataset, data_dir: str | os.PathLike | None = None, download: bool = True) -> Path:
    places = candidate_dirs(entry, data_dir)
    for _, directory in places:
        if all(_file_in(directory, spec.stem) for spec in entry.files.values()):
            return directory
    looked = "; ".join(f"{label}: {d}" for label, d in places)
    if not download:
        raise DataError(f"{entry.name} not found (looked in {looked}); {entry.how_to_get}")
    target = places[0][1] if places[0][0] != "user cache" else cache_dir(entry.name)
    try:
        for spec in entry.files.values():
            if _file_in(target, spec.stem) is None:
                download_file(spec.stem + ".gz", target, spec.sha256, mirrors(entry), gz_sha256=spec.gz_sha256)
    except DataError as e:
        raise DataError(f"{entry.name} not found (looked in {looked}) and {e}; {entry.how_to_get}") from None
    return target


# --- your own images: a folder of class folders, or CSV -------------------------------------

HELD_OUT = 0.2  # the test share of a folder or CSV file that comes without a test split
SPLIT_SEED = 0  # that split depends on this seed only, so every run of a study shares it
MAX_USER_IMAGES = 1_000_000


def load_folder(path: str) -> Dataset:
    """PATH/CLASS/*.png (any format `lenet predict` reads), or PATH/train/CLASS/* and PATH/test/CLASS/*.

    Each image goes through `lenet.inference.load_image`, the same preprocessing as
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
    from .inference import load_image  # the one preprocessing of `lenet predict`

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


# --- downloading ----------------------------------------------------------------------


def mirrors(entry: IdxDataset | None = None) -> list[str]:
    env = os.environ.get("LENET_MIRRORS")
    chosen = [m.strip() for m in env.split(",") if m.strip()] if env else list((entry or DATASETS[DEFAULT]).mirrors)
    return [m if m.endswith("/") else m + "/" for m in chosen]


def download_file(
    filename: str,
    target_dir: Path,
    sha256: str,
    urls: Sequence[str],
    attempts: int = 3,
    backoff_s: float = 1.0,
    timeout_s: float = 30.0,
    gz_sha256: str = "",
) -> Path:
    """Fetch a gzipped IDX file from the first mirror that serves the right bytes.

    The file is streamed into a temporary file beside its destination and renamed into
    place only after the SHA-256 of its decompressed content matches `sha256` (or that of
    the .gz bytes matches `gz_sha256`), so a half-finished or corrupt download never counts.
    """
    destination = Path(target_dir) / filename
    failures = []
    for base in urls:
        for attempt in range(attempts):
            try:
                _fetch_verified(base + filename, destination, sha256, gz_sha256, timeout_s)
                return destination
            except (OSError, urllib.error.URLError, DataError, zlib.error, EOFError) as e:
                failures.append(f"{base + filename}: {_reason(e)}")
                if isinstance(e, urllib.error.HTTPError) and e.code == 404:
                    break  # the mirror does not have it; retrying will not help
                if attempt + 1 < attempts:
                    time.sleep(backoff_s * 2**attempt)
    raise DataError(f"download of {filename} failed ({'; '.join(failures[-3:])})")


def _reason(e: BaseException) -> str:
    if isinstance(e, urllib.error.HTTPError):
        return f"HTTP {e.code}"
    if isinstance(e, urllib.error.URLError):
        return str(e.reason)
    return str(e) or type(e).__name__


def _fetch_verified(url: str, destination: Path, sha256: str, gz_sha256: str, timeout_s: float) -> None:
    request = urllib.request.Request(url, headers={"User-Agent": "lenet"})
    digest, gz_digest = hashlib.sha256(), hashlib.sha256()
    inflate = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    size = 0
    with urllib.request.urlopen(request, timeout=timeout_s) as response, atomic_open(destination) as out:
        while chunk := response.read(1 << 16):
            out.write(chunk)
            gz_digest.update(chunk)
            plain = inflate.decompress(chunk, MAX_IDX_BYTES + 1 - size)
            size += len(plain)
            if size > MAX_IDX_BYTES or inflate.unconsumed_tail:
                raise DataError("decompresses to too many bytes")
            digest.update(plain)
        if not inflate.eof:
            raise DataError("the connection ended before the end of the gzip stream")
        if not ((sha256 and digest.hexdigest() == sha256) or (gz_sha256 and gz_digest.hexdigest() == gz_sha256)):
            raise DataError(f"checksum mismatch (got {digest.hexdigest()[:16]}...)")


# --- batches on the device ------------------------------------------------------------


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 pixels to floats in [0, 1], exactly as torchvision's ToTensor scales them."""
    return images.float().div_(255)


def batch_indices(
    n: int, batch_size: int, *, shuffle: bool, generator: torch.Generator | None = None, device: torch.device | str = "cpu"
) -> Iterator[torch.Tensor]:
    """Index tensors covering range(n) once, like a DataLoader with drop_last=False."""
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    order = order.to(device)
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]


def holdout(
    images: torch.Tensor, labels: torch.Tensor, size: int, seed: int = 0
) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """Split off `size` random images for validation: ((train), (validation)).

    The split depends on `seed` only, so runs with different training seeds share it.
    """
    if not 0 < size < len(labels):
        raise DataError(f"a validation split of {size} images needs 0 < size < {len(labels)}")
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed)).to(labels.device)
    val, train = order[:size].sort().values, order[size:].sort().values
    return (images[train], labels[train]), (images[val], labels[val])


# --- augmentation, as batched tensor ops ----------------------------------------------


def alternating_half(n: int, seed: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """A random half of n images (bool, one per image) for alternating flips: mirrored in odd epochs,
    the rest in even ones. Drawn from the seed alone, so a resumed run draws the same half."""
    return (torch.rand(n, generator=torch.Generator().manual_seed(seed)) < 0.5).to(device)


def augment(images: torch.Tensor, shift: int, flip: bool, generator: torch.Generator | None = None,
            mirror: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
    """Random translations by up to `shift` pixels (zero fill) and horizontal flips.

    One gather for the whole batch: each image reads its 28x28 window out of a zero-padded
    copy at its own random offset. Works on uint8 or float images [N, 1, H, W]. `mirror` (bool,
    one per image) says which images to flip; without it each is flipped with probability 1/2.
    """
    n, _, h, w = images.shape
    device = images.device
    if shift:
        padded = torch.nn.functional.pad(images, (shift, shift, shift, shift))
        dy, dx = torch.randint(0, 2 * shift + 1, (2, n, 1), device=device, generator=generator)
        rows = (dy + torch.arange(h, device=device))[:, :, None]  # [n, h, 1]
        cols = (dx + torch.arange(w, device=device))[:, None, :]  # [n, 1, w]
        images = padded[torch.arange(n, device=device)[:, None, None], 0, rows, cols].unsqueeze(1)
    if flip:
        if mirror is None:
            mirror = torch.rand(n, device=device, generator=generator) < 0.5
        images = torch.where(mirror[:, None, None, None], images.flip(-1), images)
    return images
