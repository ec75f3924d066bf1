"""The IDX format of (Fashion-)MNIST files: parsing, writing, reading gzipped or raw files, bounded."""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path

import torch

from lenet.core.errors import DataError

# The largest file decompresses to 47,040,016 bytes; anything much bigger is not ours.
MAX_IDX_BYTES = 64 * 2**20

# IDX: two zero bytes, a type code (0x08 = unsigned byte) and the number of dimensions.
_IDX_UBYTE = 0x08




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

