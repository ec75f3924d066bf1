"""CIFAR-10 through the registry: a small archive of the official binary format, made here and served
by a loopback mirror with its own SHA-256 (the real archive cannot be fetched on this machine)."""

import dataclasses
import hashlib
import io
import subprocess
import tarfile

import pytest
import torch

from conftest import LENET
from lenet import load
from lenet.cli import main
from lenet.core.errors import DataError
from lenet.data.cifar import MAX_ARCHIVE_BYTES, RECORD_BYTES, parse_records, read_archive
from lenet.data.load import load_dataset
from lenet.data.registry import DATASETS, dataset_name
from lenet.data.sources import download_file, missing_files
from test_download import Files, server  # noqa: F401  (the loopback HTTP mirror)

ENTRY = DATASETS["cifar10"]
ARCHIVE = "cifar-10-binary.tar.gz"
BATCH_DIR = "cifar-10-batches-bin"
TRAIN_PER_BATCH, N_TEST = 10, 20  # 50 training records over the five batch files, 20 test records


def planes(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """`n` records' labels and red, green and blue planes ([n, 32, 32] each), drawn independently."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 10, (n,), generator=g, dtype=torch.uint8)
    red, green, blue = (torch.randint(0, 256, (n, 32, 32), generator=g, dtype=torch.uint8) for _ in range(3))
    return labels, red, green, blue


def record_file(labels, red, green, blue) -> bytes:
    """The bytes of a record file as the CIFAR-10 page describes it: per record a label byte, then the
    red plane's 1024 bytes row by row, then the green's, then the blue's."""
    return b"".join(bytes([int(label)]) + r.numpy().tobytes() + g.numpy().tobytes() + b.numpy().tobytes()
                    for label, r, g, b in zip(labels, red, green, blue))  # fmt: skip


def tar_gz(members: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    """A tar.gz of `members` (regular files) and `links` (symbolic links, name -> target) under the batch directory."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        directory = tarfile.TarInfo(BATCH_DIR)
        directory.type = tarfile.DIRTYPE
        tar.addfile(directory)
        for name, target in (links or {}).items():
            link = tarfile.TarInfo(f"{BATCH_DIR}/{name}")
            link.type, link.linkname = tarfile.SYMTYPE, target
            tar.addfile(link)
        for name, data in members.items():
            info = tarfile.TarInfo(f"{BATCH_DIR}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def small_set() -> tuple[dict[str, bytes], dict[str, tuple]]:
    """The record files and meta file of a small CIFAR-10 (by member name), and the planes written into them."""
    written = {}
    for i in range(1, 6):
        written[f"data_batch_{i}.bin"] = planes(TRAIN_PER_BATCH, seed=i)
    written["test_batch.bin"] = planes(N_TEST, seed=9)
    members = {name: record_file(*records) for name, records in written.items()}
    members["batches.meta.txt"] = ("\n".join(ENTRY.classes) + "\n\n").encode()  # as the official file ends
    members["readme.html"] = b"<html>not read</html>"
    return members, written


def with_digest(monkeypatch, blob: bytes) -> None:
    """The registry's cifar10 with `blob` as its published archive."""
    entry = dataclasses.replace(ENTRY, sha256=hashlib.sha256(blob).hexdigest(), size=len(blob))
    monkeypatch.setitem(DATASETS, "cifar10", entry)


@pytest.fixture
def local_cifar(server, tmp_path, monkeypatch):  # noqa: F811
    """A small archive on a loopback mirror, the registry's entry given its digest, an empty user cache."""
    _, url = server
    members, written = small_set()
    blob = tar_gz(members)
    Files.routes[f"/c/{ARCHIVE}"] = ("ok", blob)
    with_digest(monkeypatch, blob)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("LENET_DATA_DIR", raising=False)
    monkeypatch.setenv("LENET_MIRRORS", url + "/c")
    monkeypatch.setattr("lenet.data.sources.SYSTEM_DIR", tmp_path / "no-system-copy")
    return blob, written


def cached_files(tmp_path) -> list:
    cache = tmp_path / "cache" / "lenet" / "cifar10"
    return sorted(p.name for p in cache.iterdir()) if cache.exists() else []


def test_the_records_written_are_the_tensors_read_red_green_blue(local_cifar, tmp_path):
    blob, written = local_cifar
    data = load_dataset("cifar10")
    assert data.source == str(tmp_path / "cache" / "lenet" / "cifar10") and cached_files(tmp_path) == [ARCHIVE]
    assert (tmp_path / "cache" / "lenet" / "cifar10" / ARCHIVE).read_bytes() == blob
    assert data.train_images.shape == (50, 3, 32, 32) and data.train_images.dtype == torch.uint8
    assert data.spec.name == "cifar10" and data.spec.classes == ENTRY.classes
    for split, names in (("train", [f"data_batch_{i}.bin" for i in range(1, 6)]), ("test", ["test_batch.bin"])):
        labels, red, green, blue = (torch.cat(parts) for parts in zip(*(written[name] for name in names)))
        images = getattr(data, f"{split}_images")
        assert torch.equal(getattr(data, f"{split}_labels"), labels.long())
        assert torch.equal(images[:, 0], red) and torch.equal(images[:, 1], green) and torch.equal(images[:, 2], blue)


def test_a_plane_is_read_row_by_row():
    """Pixel (y, x) of a plane is its byte 32y + x: a record whose red is its row, green its column, blue 200."""
    rows = torch.arange(32, dtype=torch.uint8).repeat_interleave(32).reshape(32, 32)
    raw = bytes([7]) + rows.numpy().tobytes() + rows.T.contiguous().numpy().tobytes() + bytes([200]) * 1024
    images, labels = parse_records(raw, 10, "one record")
    assert labels.tolist() == [7] and images.shape == (1, 3, 32, 32)
    assert images[0, 0, 5, 9] == 5 and images[0, 1, 5, 9] == 9 and images[0, 2, 5, 9] == 200


def test_the_second_load_reads_the_cache_and_asks_no_mirror(local_cifar):
    first = load_dataset("cifar10")
    assert Files.hits == [f"/c/{ARCHIVE}"]
    Files.hits.clear()
    again = load_dataset("CIFAR-10")
    assert Files.hits == [] and again.source == first.source
    assert torch.equal(again.test_images, first.test_images) and torch.equal(again.train_labels, first.train_labels)


def test_a_wrong_digest_is_refused_in_one_line_and_nothing_is_cached(local_cifar, tmp_path, monkeypatch):
    monkeypatch.setitem(DATASETS, "cifar10", dataclasses.replace(DATASETS["cifar10"], sha256="0" * 64))
    monkeypatch.setattr("lenet.data.sources.time.sleep", lambda s: None)
    with pytest.raises(DataError) as info:
        load_dataset("cifar10")
    message = str(info.value)
    assert "download of cifar-10-binary.tar.gz failed" in message and "checksum mismatch" in message
    assert "\n" not in message and "cifar.html" in message  # says where to get it by hand
    assert cached_files(tmp_path) == []


def test_a_truncated_download_is_not_cached(local_cifar, tmp_path, monkeypatch):
    blob, _ = local_cifar
    Files.routes[f"/c/{ARCHIVE}"] = ("drop", blob)  # half the archive, then the connection closes
    monkeypatch.setattr("lenet.data.sources.time.sleep", lambda s: None)
    with pytest.raises(DataError, match="download of cifar-10-binary.tar.gz failed"):
        load_dataset("cifar10")
    assert Files.hits.count(f"/c/{ARCHIVE}") == 3 and cached_files(tmp_path) == []


def test_a_cached_archive_that_changed_is_refused_and_not_fetched_again(local_cifar, tmp_path):
    blob, _ = local_cifar
    load_dataset("cifar10")
    (tmp_path / "cache" / "lenet" / "cifar10" / ARCHIVE).write_bytes(blob[:-1] + bytes([blob[-1] ^ 1]))
    Files.hits.clear()
    with pytest.raises(DataError, match=f"{ARCHIVE}: SHA-256 .* is not the known cifar10 file"):
        load_dataset("cifar10")
    assert Files.hits == []


def test_the_bounds_admit_the_official_archive_and_a_download_past_them_stops(server, tmp_path):  # noqa: F811
    """The download of the archive is bounded by its own limit, not the IDX files' (the real tar stream is
    about 184 MB), and a stream past the limit it is given is refused as it arrives."""
    (published,) = missing_files(ENTRY, tmp_path)
    assert published.filename == ARCHIVE and published.gz_sha256 == ENTRY.sha256
    assert published.max_bytes == MAX_ARCHIVE_BYTES > max(ENTRY.size, 60_000 * RECORD_BYTES)
    _, url = server
    blob = tar_gz(small_set()[0])
    Files.routes[f"/c/{ARCHIVE}"] = ("ok", blob)
    with pytest.raises(DataError, match="decompresses to too many bytes"):
        download_file(ARCHIVE, tmp_path, "", [url + "/c/"], attempts=1, gz_sha256=hashlib.sha256(blob).hexdigest(),
                      max_bytes=len(blob))  # fmt: skip
    assert list(tmp_path.iterdir()) == []


def bad_archive(kind: str) -> bytes:
    """The small archive with one thing wrong."""
    members, _ = small_set()
    links = None
    if kind == "symlink":  # a record file that is a link (to anything: it is never followed)
        del members["data_batch_2.bin"]
        links = {"data_batch_2.bin": "/etc/passwd"}
    elif kind == "stray symlink":  # a link beside the right files
        links = {"extra": "../../outside"}
    elif kind == "length":
        members["data_batch_3.bin"] += b"\x00" * 5
    elif kind == "label":
        raw = bytearray(members["test_batch.bin"])
        raw[4 * RECORD_BYTES] = 10  # record 4's label: past the ten classes
        members["test_batch.bin"] = bytes(raw)
    elif kind == "missing":
        del members["data_batch_5.bin"]
    elif kind == "classes":
        members["batches.meta.txt"] = b"cat\ndog\n"
    return tar_gz(members, links)


@pytest.mark.parametrize("kind, fragment", [
    ("symlink", f"{BATCH_DIR}/data_batch_2.bin is a link or a special file, not a regular file"),
    ("stray symlink", f"{BATCH_DIR}/extra is a link or a special file"),
    ("length", f"{BATCH_DIR}/data_batch_3.bin: 30,735 bytes is not a whole number of 3073-byte records"),
    ("label", f"{BATCH_DIR}/test_batch.bin: record 4 has label 10; there are 10 classes"),
    ("missing", f"{BATCH_DIR}/data_batch_5.bin is missing from the archive"),
    ("classes", f"{BATCH_DIR}/batches.meta.txt: the classes are cat, dog; cifar10 has airplane"),
])  # fmt: skip
def test_a_bad_archive_with_the_right_digest_is_refused_in_one_line(tmp_path, monkeypatch, kind, fragment):
    """The digest pins the official archive; the format is checked all the same, member by member."""
    blob = bad_archive(kind)
    (tmp_path / ARCHIVE).write_bytes(blob)
    with_digest(monkeypatch, blob)
    with pytest.raises(DataError) as info:
        load_dataset("cifar10", tmp_path, download=False)
    message = str(info.value)
    assert message.startswith(f"{tmp_path / ARCHIVE}: ") and fragment in message and "\n" not in message


def test_a_file_that_is_no_tar_gz_is_refused_in_one_line():
    with pytest.raises(DataError, match="archive.tar.gz: not a readable tar.gz archive"):
        read_archive(b"\x1f\x8b" + b"\x00" * 100, ENTRY, "archive.tar.gz")


@pytest.mark.parametrize("spelling", ["CIFAR-10", "cifar_10", "Cifar10", "CIFAR 10", "cifar10"])
def test_every_spelling_means_cifar10(spelling):
    assert dataset_name(spelling) == "cifar10"


def test_lenet_models_lists_cifar10(capsys):
    assert main(["models"]) == 0
    rows = [line.split(None, 1) for line in capsys.readouterr().out.splitlines() if line.startswith("  ")]
    assert ["cifar10", ENTRY.description] in rows


def test_the_command_line_refuses_a_bad_archive_in_one_line(tmp_path):
    """`lenet train --dataset cifar10` on a file that is not the official archive: exit 1, one line, no traceback."""
    members, _ = small_set()
    (tmp_path / ARCHIVE).write_bytes(tar_gz(members))  # well formed, but not the published bytes
    proc = subprocess.run([*LENET, "train", "--dataset", "CIFAR-10", "--data-dir", str(tmp_path), "--no-save-run"],
                          capture_output=True, text=True, timeout=240)  # fmt: skip
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert f"{tmp_path / ARCHIVE}: SHA-256" in lines[0] and "not the known cifar10 file" in lines[0]


def test_the_command_line_refuses_a_link_in_the_archive_in_one_line(tmp_path, monkeypatch, capsys):
    blob = bad_archive("symlink")
    (tmp_path / ARCHIVE).write_bytes(blob)
    with_digest(monkeypatch, blob)  # the digest patched, so in this process: the format check is what answers
    assert main(["train", "--dataset", "cifar10", "--data-dir", str(tmp_path), "--no-save-run"]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "is a link or a special file" in err and "Traceback" not in err


def test_colour_training_images_with_grey_test_images_are_refused():
    """Dataset.from_tensors takes CIFAR-10's [N, 3, 32, 32] beside the grey [N, 28, 28], never the two mixed."""
    from lenet.data.dataset import Dataset

    labels = torch.zeros(2, dtype=torch.uint8)
    colour, grey = torch.zeros(2, 3, 32, 32, dtype=torch.uint8), torch.zeros(2, 28, 28, dtype=torch.uint8)
    data = Dataset.from_tensors(colour, labels, colour, labels, "here", {}, "cifar10", ENTRY.classes)
    assert data.train_images.shape == (2, 3, 32, 32) and data.spec.image_shape == (3, 32, 32)
    with pytest.raises(DataError, match=r"test images are \[1, 28, 28\] each, train images \[3, 32, 32\]"):
        Dataset.from_tensors(colour, labels, grey, labels, "here", {}, "cifar10", ENTRY.classes)


def test_the_classifier_tutorial_trains_on_cifar10_and_is_evaluated(tmp_path, monkeypatch, capsys):
    """pytorch.org's classifier tutorial as a recipe, on the small archive: its 3x32x32 images reach lenet_cifar,
    the run records colour, and eval reads the data set again."""
    blob = tar_gz(small_set()[0])
    (tmp_path / ARCHIVE).write_bytes(blob)
    with_digest(monkeypatch, blob)
    out = tmp_path / "runs"
    argv = ["train", "--dataset", "CIFAR-10", "--data-dir", str(tmp_path), "--recipe", "classifier", "--no-progress",
            "--device", "cpu", "--out", str(out), "--name", "c", "--no-report"]  # fmt: skip
    assert main(argv) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("cifar10 (colour 32x32), recipe classifier: model lenet_cifar, sgd lr 0.001, batch 4, 2 epochs")
    spec = load(out / "c").data
    assert (spec.channels, spec.image_size, len(spec.mean)) == (3, 32, 3)
    assert main(["eval", str(out / "c"), "--data-dir", str(tmp_path)]) == 0
    assert "test accuracy" in capsys.readouterr().out
