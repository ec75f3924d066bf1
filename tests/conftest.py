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


def pytest_terminal_summary(terminalreporter):
    """After a run that fuzzed, how many generated inputs each kind of input got."""
    fuzz = sys.modules.get("test_fuzz")
    counts = getattr(fuzz, "COUNTS", None)
    if counts:
        terminalreporter.write_sep("-", "fuzzed inputs (tests/test_fuzz.py): generated, valid results, refused")
        for kind, n in counts.items():
            valid = fuzz.VALID[kind]
            terminalreporter.write_line(f"{n:>7,} {valid:>6,} {n - valid:>6,}  {kind}")
        terminalreporter.write_line(f"{sum(counts.values()):>7,} {sum(fuzz.VALID.values()):>6,} "
                                    f"{sum(counts.values()) - sum(fuzz.VALID.values()):>6,}  in all")  # fmt: skip
