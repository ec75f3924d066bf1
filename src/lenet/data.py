"""Fashion-MNIST: the IDX format, where the files come from, checksums, and device batches.

The whole set is decoded once into uint8 tensors and kept on the training device; a batch
is an index slice of those tensors, never a per-sample Python loop or a DataLoader worker.

Where the files are looked for, in order (the first directory holding all four wins):
  1. the `data_dir` argument (`--data-dir`),
  2. the directory in the environment variable LENET_DATA_DIR,
  3. the user cache directory, $XDG_CACHE_HOME/lenet/fashion-mnist (~/.cache/...),
  4. /usr/share/datasets/fashion-mnist (Debian's package `dataset-fashion-mnist`),
  5. otherwise the missing files are downloaded from the public mirrors (LENET_MIRRORS
     overrides them, comma-separated) into the first of 1-3 that was given.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from .errors import DataError
from .files import atomic_open

CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
IMAGE_SIZE = 28


@dataclass(frozen=True)
class IdxFile:
    stem: str  # file name without .gz
    sha256: str  # of the decompressed bytes
    count: int


FILES = {
    "train_images": IdxFile("train-images-idx3-ubyte", "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888", 60000),
    "train_labels": IdxFile("train-labels-idx1-ubyte", "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9", 60000),
    "test_images": IdxFile("t10k-images-idx3-ubyte", "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b", 10000),
    "test_labels": IdxFile("t10k-labels-idx1-ubyte", "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34", 10000),
}  # fmt: skip

MIRRORS = (
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
)
SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
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
    return torch.frombuffer(bytearray(raw[header:]), dtype=torch.uint8).reshape(shape)


def _prod(shape: Sequence[int]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


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
        raise DataError(f"{path}: decompresses to more than {MAX_IDX_BYTES} bytes; not a Fashion-MNIST file")
    return raw


def read_idx(path: str | os.PathLike) -> torch.Tensor:
    path = Path(path)
    return parse_idx(read_idx_bytes(path), str(path))


# --- the data set ---------------------------------------------------------------------


@dataclass
class FashionMNIST:
    """The four tensors, uint8 images of shape [N, 1, 28, 28] and int64 labels."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    source: str  # the directory the files were read from
    sha256: dict[str, str]

    @classmethod
    def from_idx(cls, train_images, train_labels, test_images, test_labels, source: str, sha256: dict[str, str]):
        """Check that decoded IDX tensors fit together, and shape them for training."""
        for split, images, labels in (("train", train_images, train_labels), ("test", test_images, test_labels)):
            if images.dim() != 3 or tuple(images.shape[1:]) != (IMAGE_SIZE, IMAGE_SIZE):
                raise DataError(f"{split} images have shape {list(images.shape)}, expected [N, 28, 28]")
            if labels.dim() != 1 or len(labels) != len(images):
                raise DataError(f"{split} has {len(images)} images but {labels.numel()} labels")
            if len(labels) and int(labels.max()) >= len(CLASSES):
                raise DataError(f"{split} labels go up to {int(labels.max())}; Fashion-MNIST has 10 classes")
        return cls(
            train_images.unsqueeze(1), train_labels.long(),
            test_images.unsqueeze(1), test_labels.long(), source, sha256,
        )  # fmt: skip

    def to(self, device: torch.device | str) -> FashionMNIST:
        move = lambda t: t.to(device, non_blocking=True)  # noqa: E731
        return FashionMNIST(
            move(self.train_images), move(self.train_labels),
            move(self.test_images), move(self.test_labels), self.source, self.sha256,
        )  # fmt: skip


def load_fashion_mnist(
    data_dir: str | os.PathLike | None = None,
    device: torch.device | str = "cpu",
    download: bool = True,
) -> FashionMNIST:
    """Find (or download), verify and decode Fashion-MNIST onto `device`."""
    directory = find_or_download(data_dir, download)
    tensors, hashes = {}, {}
    for key, spec in FILES.items():
        path = _file_in(directory, spec.stem)
        assert path is not None
        raw = read_idx_bytes(path)
        digest = hashlib.sha256(raw).hexdigest()
        if digest != spec.sha256:
            raise DataError(
                f"{path}: SHA-256 {digest[:16]}... is not the known Fashion-MNIST file "
                f"({spec.sha256[:16]}...); delete it and run again to fetch a good copy"
            )
        tensors[key] = parse_idx(raw, str(path))
        hashes[spec.stem] = digest
    return FashionMNIST.from_idx(**tensors, source=str(directory), sha256=hashes).to(device)


# --- where the files are --------------------------------------------------------------


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "lenet" / "fashion-mnist"


def candidate_dirs(data_dir: str | os.PathLike | None = None) -> list[tuple[str, Path]]:
    """The places looked in, in order, each with how it was chosen."""
    places = []
    if data_dir is not None:
        places.append(("--data-dir", Path(data_dir)))
    if os.environ.get("LENET_DATA_DIR"):
        places.append(("$LENET_DATA_DIR", Path(os.environ["LENET_DATA_DIR"])))
    places.append(("user cache", cache_dir()))
    places.append(("system (Debian dataset-fashion-mnist)", SYSTEM_DIR))
    return places


def _file_in(directory: Path, stem: str) -> Path | None:
    for name in (f"{stem}.gz", stem):
        if (directory / name).is_file():
            return directory / name
    return None


def find_or_download(data_dir: str | os.PathLike | None = None, download: bool = True) -> Path:
    places = candidate_dirs(data_dir)
    for _, directory in places:
        if all(_file_in(directory, spec.stem) for spec in FILES.values()):
            return directory
    looked = "; ".join(f"{label}: {d}" for label, d in places)
    how = ("pass --data-dir DIR holding the four .gz files from github.com/zalandoresearch/fashion-mnist, "
           "or on Debian/Ubuntu: apt-get install dataset-fashion-mnist")  # fmt: skip
    if not download:
        raise DataError(f"Fashion-MNIST not found (looked in {looked}); {how}")
    target = places[0][1] if data_dir is not None or os.environ.get("LENET_DATA_DIR") else cache_dir()
    try:
        for spec in FILES.values():
            if _file_in(target, spec.stem) is None:
                download_file(spec.stem + ".gz", target, spec.sha256, mirrors())
    except DataError as e:
        raise DataError(f"Fashion-MNIST not found (looked in {looked}) and {e}; {how}") from None
    return target


# --- downloading ----------------------------------------------------------------------


def mirrors() -> list[str]:
    env = os.environ.get("LENET_MIRRORS")
    chosen = [m.strip() for m in env.split(",") if m.strip()] if env else list(MIRRORS)
    return [m if m.endswith("/") else m + "/" for m in chosen]


def download_file(
    filename: str,
    target_dir: Path,
    sha256: str,
    urls: Sequence[str],
    attempts: int = 3,
    backoff_s: float = 1.0,
    timeout_s: float = 30.0,
) -> Path:
    """Fetch a gzipped IDX file from the first mirror that serves the right bytes.

    The file is streamed into a temporary file beside its destination and renamed into
    place only after the SHA-256 of its decompressed content matches `sha256`, so a
    half-finished or corrupt download never counts as data.
    """
    destination = Path(target_dir) / filename
    failures = []
    for base in urls:
        for attempt in range(attempts):
            try:
                _fetch_verified(base + filename, destination, sha256, timeout_s)
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


def _fetch_verified(url: str, destination: Path, sha256: str, timeout_s: float) -> None:
    request = urllib.request.Request(url, headers={"User-Agent": "lenet"})
    digest = hashlib.sha256()
    inflate = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    size = 0
    with urllib.request.urlopen(request, timeout=timeout_s) as response, atomic_open(destination) as out:
        while chunk := response.read(1 << 16):
            out.write(chunk)
            plain = inflate.decompress(chunk, MAX_IDX_BYTES + 1 - size)
            size += len(plain)
            if size > MAX_IDX_BYTES or inflate.unconsumed_tail:
                raise DataError("decompresses to too many bytes")
            digest.update(plain)
        if not inflate.eof:
            raise DataError("the connection ended before the end of the gzip stream")
        if digest.hexdigest() != sha256:
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


def augment(images: torch.Tensor, shift: int, flip: bool, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random translations by up to `shift` pixels (zero fill) and horizontal flips.

    One gather for the whole batch: each image reads its 28x28 window out of a zero-padded
    copy at its own random offset. Works on uint8 or float images [N, 1, H, W].
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
        mirror = torch.rand(n, device=device, generator=generator) < 0.5
        images = torch.where(mirror[:, None, None, None], images.flip(-1), images)
    return images
