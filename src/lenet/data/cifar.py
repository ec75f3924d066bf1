"""CIFAR-10's binary version: a tar.gz of files of fixed-length records, read in memory, bounded.

Each record is one label byte, then the 1024 red, the 1024 green and the 1024 blue bytes of a 32x32
image, each plane row by row. The archive is read with `tarfile` from bytes already checked against
their SHA-256 (data/sources.py): nothing is extracted to disk and nothing is unpickled (the Python
version of CIFAR-10 is pickles, which can run code; this one is plain bytes).
"""

from __future__ import annotations

import io
import tarfile
import zlib

import torch

from lenet.core.errors import DataError
from lenet.data.registry import ArchiveDataset

CHANNELS, SIDE = 3, 32
RECORD_BYTES = 1 + CHANNELS * SIDE * SIDE  # a label byte, then the three colour planes: 3073
# The official archive is 170,052,171 bytes and its tar stream about 184 MB (60,000 records, a meta file and a
# readme); an archive or a tar stream past this bound is not CIFAR-10, and is refused before it fills memory.
MAX_ARCHIVE_BYTES = 256 * 2**20
# The official archive holds 9 entries (a directory, 6 record files, the meta file, a readme); each entry
# costs tarfile memory, so an archive of many tiny ones is refused before they add up.
MAX_MEMBERS = 64
MAX_META_BYTES = 4096  # ten class names, one a line (the official file is 88 bytes)


def read_archive(blob: bytes, entry: ArchiveDataset, name: str) -> dict[str, torch.Tensor]:
    """The four tensors of an archive of `entry`'s form: uint8 images [N, 3, 32, 32] and labels [N]
    for train and test. `name` (the archive's path) begins every error, which names the member too."""
    members = _read_members(blob, entry, name)
    _check_classes(members[entry.meta_member], entry, f"{name}: {entry.meta_member}")
    tensors = {}
    for split, wanted in (("train", entry.train_members), ("test", entry.test_members)):
        parts = [parse_records(members[m], len(entry.classes), f"{name}: {m}") for m in wanted]
        tensors[f"{split}_images"] = torch.cat([images for images, _ in parts])
        tensors[f"{split}_labels"] = torch.cat([labels for _, labels in parts])
    return tensors


def parse_records(raw: bytes, n_classes: int, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The images ([N, 3, 32, 32] uint8, channel planes R, G, B) and labels ([N] uint8) of one record file."""
    if len(raw) % RECORD_BYTES:
        raise DataError(f"{name}: {len(raw):,} bytes is not a whole number of {RECORD_BYTES}-byte records")
    if not raw:  # frombuffer refuses an empty buffer
        return torch.empty(0, CHANNELS, SIDE, SIDE, dtype=torch.uint8), torch.empty(0, dtype=torch.uint8)
    records = torch.frombuffer(bytearray(raw), dtype=torch.uint8).reshape(-1, RECORD_BYTES)
    labels = records[:, 0].clone()
    if int(labels.max()) >= n_classes:
        bad = int((labels >= n_classes).nonzero()[0])
        raise DataError(f"{name}: record {bad} has label {int(labels[bad])}; there are {n_classes} classes")
    return records[:, 1:].reshape(-1, CHANNELS, SIDE, SIDE).clone(), labels


def _read_members(blob: bytes, entry: ArchiveDataset, name: str) -> dict[str, bytes]:
    """The bytes of the members `entry` names, each a regular file found once. Links and special files are
    refused wherever they are; other regular files and directories (the official readme.html) are skipped."""
    wanted = {*entry.train_members, *entry.test_members, entry.meta_member}
    found: dict[str, bytes] = {}
    total = 0
    try:
        with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tar:
            for count, member in enumerate(tar, 1):
                if count > MAX_MEMBERS:
                    raise DataError(f"{name}: more than {MAX_MEMBERS} entries; not a CIFAR-10 archive")
                if not (member.isreg() or member.isdir()):
                    raise DataError(f"{name}: {member.name} is a link or a special file, not a regular file")
                total += member.size  # skipped members too: passing over one decompresses it
                if total > MAX_ARCHIVE_BYTES or (member.name == entry.meta_member and member.size > MAX_META_BYTES):
                    raise DataError(f"{name}: {member.name} is {member.size:,} bytes, too large for CIFAR-10")
                if member.name not in wanted:
                    continue
                if member.name in found:
                    raise DataError(f"{name}: {member.name} is in the archive twice")
                found[member.name] = _member_bytes(tar, member, name)
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
        raise DataError(f"{name}: not a readable tar.gz archive ({e})") from None
    missing = [m for m in sorted(wanted) if m not in found]
    if missing:
        raise DataError(f"{name}: {missing[0]} is missing from the archive ({len(missing)} of {len(wanted)} missing)")
    return found


def _member_bytes(tar: tarfile.TarFile, member: tarfile.TarInfo, name: str) -> bytes:
    f = tar.extractfile(member)
    assert f is not None  # a regular file always has its data
    raw = f.read(member.size)
    if len(raw) != member.size:
        raise DataError(f"{name}: {member.name} is truncated ({len(raw):,} of {member.size:,} bytes)")
    return raw


def _check_classes(raw: bytes, entry: ArchiveDataset, name: str) -> None:
    """The meta file's class names must be the registry's: the labels' meaning is read from them."""
    names = tuple(line.strip() for line in raw.decode("ascii", errors="replace").splitlines() if line.strip())
    if names != entry.classes:
        raise DataError(f"{name}: the classes are {', '.join(names[:12]) or 'none'}; {entry.name} has "
                        f"{', '.join(entry.classes)}")  # fmt: skip
