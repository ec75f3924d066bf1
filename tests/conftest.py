import gzip
import struct
import sys
from pathlib import Path

import pytest
import torch

from lenet.data import FashionMNIST, load_fashion_mnist

REPO = Path(__file__).resolve().parents[1]
LENET = [sys.executable, "-m", "lenet.cli"]


@pytest.fixture(scope="session")
def fmnist() -> FashionMNIST:
    """The real data set. `make test` installs it; a missing set fails, it never skips."""
    return load_fashion_mnist(download=False)


def idx_bytes(array: torch.Tensor) -> bytes:
    header = b"\x00\x00\x08" + bytes([array.dim()]) + struct.pack(f">{array.dim()}I", *array.shape)
    return header + array.to(torch.uint8).numpy().tobytes()


def write_idx(path: Path, array: torch.Tensor, gz: bool = True) -> Path:
    data = idx_bytes(array)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def small_subset(data: FashionMNIST, n_train: int, n_test: int) -> FashionMNIST:
    return FashionMNIST(
        data.train_images[:n_train], data.train_labels[:n_train],
        data.test_images[:n_test], data.test_labels[:n_test], data.source, data.sha256,
    )  # fmt: skip
