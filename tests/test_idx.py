"""The IDX reader and the data set's own checks, on synthetic files."""

import gzip

import pytest
import torch

from conftest import idx_bytes, write_idx
from lenet.data.dataset import FashionMNIST
from lenet.data.idx import parse_idx, read_idx, read_idx_bytes
from lenet.data.registry import DATASETS
from lenet.core.errors import DataError

FILES = DATASETS["fashion-mnist"].files


def test_round_trip_gzipped_and_raw(tmp_path):
    images = torch.randint(0, 256, (5, 28, 28), dtype=torch.uint8)
    for gz in (True, False):
        path = write_idx(tmp_path / f"x{gz}", images, gz=gz)
        assert torch.equal(read_idx(path), images)


def test_labels_are_one_dimensional():
    labels = torch.tensor([3, 1, 4, 1, 5], dtype=torch.uint8)
    assert torch.equal(parse_idx(idx_bytes(labels)), labels)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda b: b[:-1], "truncated"),
        (lambda b: b[:10], "truncated"),
        (lambda b: b[:2], "truncated"),
        (lambda b: b + b"\x00", "trailing"),
        (lambda b: b"\x00\x00\x09" + b[3:], "bad magic"),
        (lambda b: b"\x01\x00" + b[2:], "bad magic"),
        (lambda b: b[:3] + b"\x07" + b[4:], "bad magic"),
    ],
)
def test_malformed_idx_is_refused_with_its_name(mutate, message):
    good = idx_bytes(torch.zeros(2, 28, 28, dtype=torch.uint8))
    with pytest.raises(DataError, match=message) as info:
        parse_idx(mutate(good), "some-file")
    assert "some-file" in str(info.value)


def test_zero_elements_and_huge_dimensions():
    assert parse_idx(b"\x00\x00\x08\x03" + bytes(4) + b"\x00\x00\x00\x1c" * 2).shape == (0, 28, 28)
    # No element to store, yet 2**31 x 2**31 would overflow a tensor's strides: refused by the header alone.
    with pytest.raises(DataError, match="declares dimensions"):
        parse_idx(b"\x00\x00\x08\x03" + bytes(4) + b"\x80\x00\x00\x00" * 2)


def test_truncated_gzip_names_the_file(tmp_path):
    blob = gzip.compress(idx_bytes(torch.zeros(50, 28, 28, dtype=torch.uint8)))
    path = tmp_path / "cut.gz"
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DataError, match="cut.gz"):
        read_idx(path)


def test_decompression_bomb_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr("lenet.data.idx.MAX_IDX_BYTES", 1000)
    path = tmp_path / "bomb.gz"
    path.write_bytes(gzip.compress(b"\x00" * 5000))
    with pytest.raises(DataError, match="decompresses to more"):
        read_idx_bytes(path)


def _tensors(n_train=4, n_test=3):
    return dict(
        train_images=torch.zeros(n_train, 28, 28, dtype=torch.uint8),
        train_labels=torch.zeros(n_train, dtype=torch.uint8),
        test_images=torch.zeros(n_test, 28, 28, dtype=torch.uint8),
        test_labels=torch.zeros(n_test, dtype=torch.uint8),
    )


def test_from_idx_shapes_for_training_and_keeps_every_value():
    torch.manual_seed(0)
    tensors = {k: torch.randint(0, 256 if "images" in k else 10, v.shape, dtype=torch.uint8)
               for k, v in _tensors().items()}  # fmt: skip
    data = FashionMNIST.from_tensors(**tensors, source="synthetic", sha256={}, name="synthetic",
                                     classes=tuple("abcdefghij"))
    assert data.train_images.shape == (4, 1, 28, 28) and data.train_labels.dtype == torch.long
    assert torch.equal(data.train_images[:, 0], tensors["train_images"])
    assert torch.equal(data.test_images[:, 0], tensors["test_images"])
    assert data.train_labels.tolist() == tensors["train_labels"].tolist()
    assert data.test_labels.tolist() == tensors["test_labels"].tolist()


@pytest.mark.parametrize(
    "change, message",
    [
        ({"train_labels": torch.zeros(5, dtype=torch.uint8)}, "4 images but 5 labels"),
        ({"test_images": torch.zeros(3, 32, 32, dtype=torch.uint8)}, "test images are \\[1, 32, 32\\] each, train images \\[1, 28, 28\\]"),
        ({"test_labels": torch.tensor([0, 10, 2], dtype=torch.uint8)}, "labels go up to 10"),
    ],
)
def test_from_idx_refuses_files_that_do_not_fit(change, message):
    with pytest.raises(DataError, match=message):
        FashionMNIST.from_tensors(**{**_tensors(), **change}, source="synthetic", sha256={}, name="synthetic",
                                  classes=tuple("abcdefghij"))


def test_real_files_decode_and_verify(fmnist):
    assert fmnist.train_images.shape == (60000, 1, 28, 28) and fmnist.train_images.dtype == torch.uint8
    assert fmnist.test_images.shape == (10000, 1, 28, 28)
    assert torch.equal(torch.bincount(fmnist.test_labels), torch.full((10,), 1000))
    assert torch.equal(torch.bincount(fmnist.train_labels), torch.full((10,), 6000))
    assert fmnist.sha256 == {spec.stem: spec.sha256 for spec in FILES.values()}  # the published checksums
