"""Property-based fuzzing of everything that reads a file a user hands us.

The readers of untrusted bytes: the IDX reader (Fashion-MNIST files, raw or gzipped), the
checkpoint loader (safetensors with lenet metadata), the image decoder, the folder and CSV data
sets, and every file of a run or a sweep, each through every command that reads it. Each test
below generates thousands of malformed inputs (random bytes, mutated valid files, headers
that declare huge sizes, bombs) and requires that every one ends in the reader's own error
(a LenetError subclass) or a valid result: never another exception, a hang or a huge
allocation. Hypothesis runs derandomized, so CI sees the same inputs on every run.

Every test counts the inputs it ran in COUNTS, by kind (KINDS); conftest.py prints the totals
after the run, and the last test checks that RELIABILITY.md's table is this run's (with
--write-fuzz-table it writes the table there first).
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import shutil
import struct
import subprocess
import sys
import textwrap
import types
import zlib
from collections import Counter
from functools import cache
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.internal.conjecture import providers
from PIL import Image

from benchmarks.sections import read_section, write_section
from conftest import REPO
from lenet.runs.checkpoint import FORMAT, load
from lenet.data.idx import parse_idx, read_idx
from lenet.core.errors import CheckpointError, DataError, ImageError, LenetError, ServeError
from lenet.data.images import load_image
from lenet.data.load import load_dataset
from lenet.data.registry import MAX_CLASSES
from lenet.models.lenet import MAX_PARAMETERS, MODELS, LeNet, count_parameters, create_model
from lenet.models.views import Classifier

pytestmark = pytest.mark.timeout(120)  # a hang fails the test instead of stalling the suite

# Each kind of input: the `-k` name that runs its test alone -> (a line for the terminal, RELIABILITY.md's description).
KINDS = {
    "idx_bytes": (
        "IDX bytes: random, mutated headers, huge dimensions (parse_idx)",
        "IDX bytes (`parse_idx`): random bytes; valid files of random shape with bit flips, truncation, insertions, "
        "32/64-bit overwrites in the header; headers declaring up to 3 x (2^32 - 1) elements or other type codes",
    ),
    "idx_files": (
        "IDX files: raw, gzipped, damaged/truncated gzip, gzip bombs (read_idx)",
        "IDX files (`read_idx`): raw, gzipped, gzip with damaged bytes, truncated gzip, trailing garbage, gzip bombs "
        "over the size limit (scaled down to 4 KB for speed)",
    ),
    "checkpoint_bytes": (
        "checkpoint bytes: random, huge header lengths, mutated valid files (load)",
        "checkpoint bytes (`lenet.load`): random bytes; 8-byte header lengths up to 2^64 - 1 over random or near-JSON "
        "headers; valid `lenet` and `lenet_wide` checkpoints with bytes flipped, overwritten, cut or inserted, mostly "
        "in the JSON header",
    ),
    "checkpoint_configs": (
        "checkpoint configs: wrong types, absurd sizes, bad JSON; wrong dtypes/shapes (load)",
        "checkpoint contents (`lenet.load`): well-formed safetensors whose `model_config` has wrong types (strings for "
        "channels, floats, lists, nested junk), negative, zero and huge sizes (4097, 10^9, 2^63, 10^30), NaN/infinite "
        "floats, unknown options, cut or non-object JSON, 100,000-deep nesting, another `format`; weights with "
        "changed dtypes (float16/64, bfloat16, int8/32/64, uint8, bool) or shapes, missing or extra tensors",
    ),
    "images": (
        "images: random, mutated PNG/JPEG/GIF/BMP/WebP, PNG headers of any size and mode (load_image)",
        "images (`load_image`): random bytes, random bytes after PNG/JPEG/GIF/BMP/TIFF/WebP signatures; valid PNG (1, "
        "L, LA, P, P with transparency, RGB, RGBA, I;16), JPEG (L, RGB, CMYK, progressive, EXIF-rotated), GIF (still, "
        "animated), BMP, WebP files of 1x1 to 28x28 with bytes flipped, cut, inserted or overwritten; PNGs with a "
        "correct-CRC IHDR declaring any width and height (0 to 2^32 - 1: empty images, decompression bombs), any bit "
        "depth and colour type, with PLTE/tRNS chunks",
    ),
    "folder_datasets": (
        "folder: data sets: broken/unreadable/empty files, links out, empty classes, mixed sizes (load_dataset)",
        "folder data sets (`load_dataset(\"folder:...\")`, with and without `skip_bad`): 0-4 class folders, flat or "
        "`train/` and `test/` (the same classes or not), each of 0-6 files: valid PNG/JPEG/GIF/BMP/WebP images of "
        "every mode and of 1x1 to 28x28, mutated images, random bytes, empty files, links out of the folder, broken "
        "links, links within it, nested folders, hidden files; sometimes a class folder that is a link out. A data "
        "set must hold every readable file and name every other one, and nothing from outside the folder",
    ),
    "csv_datasets": (
        "csv: data sets: bad and huge labels (2^70, 10^12), bad pixels, wrong row lengths (load_dataset)",
        "CSV data sets (`load_dataset(\"csv:...\")`): a file, or a directory of `*train*.csv` and `*test*.csv` "
        "(or one of them twice, or missing), with or without a header and `classes.txt`; labels 0-3, negative, 999, "
        "1000, 10^7, 10^12, 2^63, 2^70, 5,000 digits, `1.5`, empty or not a number; pixels out of 0-255, `nan`, "
        "empty; rows of 0 to 786 columns",
    ),
    "run_config": (
        "run files: config.json mutated (eval, report, compare, predict, serve, train --resume)",
        "a run's `config.json`, mutated from a valid one, through every command that reads it (`eval`, `report`, "
        "`compare`, `predict`, `serve` start-up, `train --resume`): one edit of a node (wrong types, `NaN`, "
        "infinities, 2^70, 10^30, a list for an object, an object for a list, a key deleted or added), or of the "
        "whole file (invalid UTF-8, cut short, 5,000-deep nesting, empty, another JSON value)",
    ),
    "run_summary": (
        "run files: summary.json mutated (report, compare, serve, train --resume)",
        "`summary.json`, mutated as above, through `report`, `compare`, `serve` start-up and `train --resume` of the "
        "finished run",
    ),
    "run_metrics": (
        "run files: metrics.csv mutated (report, compare)",
        "`metrics.csv` through `report` and `compare`: a cell made `x`, `nan`, `inf`, `1e400`, `-1`, empty or 2^70; "
        "a column or the header dropped, a column added, a row cut short, invalid UTF-8",
    ),
    "run_state": (
        "run files: train_state.pt mutated (train --resume)",
        "`train_state.pt` through `train --resume`: a key of the saved dictionary (or of its `rng`) deleted, or "
        "its value made a number, a string, `None`, a list, a tensor of another shape or dtype; or the file's "
        "bytes cut short",
    ),
    "run_exports": (
        "run files: export.json mutated (export)",
        "`export.json` (mutated as JSON above) through `export`, which adds its entry beside those there",
    ),
    "sweep_records": (
        "sweep files: plan.json, trials.json, sessions.json, failed.json mutated (sweep --resume)",
        "a sweep's `plan.json`, `trials.json`, `sessions.json` and a run's `failed.json`, mutated as JSON above, "
        "through `sweep --resume` (stopped before Ray starts where trials remain)",
    ),
    "memory": (
        "huge declared sizes, each in a process allowed only the memory it needs (RLIMIT_AS)",
        "huge declared sizes in a process limited by `RLIMIT_AS` (see below)",
    ),
}
COUNTS: Counter[str] = Counter()  # generated inputs per kind; conftest.py reports them
VALID: Counter[str] = Counter()  # of those, the ones that gave a valid result (the rest were refused)
TABLE = "fuzz-table"  # RELIABILITY.md's section that fuzz_table() writes


# Hypothesis also draws literals found in the source of the project's modules then imported ("local
# constants"), so an edit anywhere in lenet, or a run beside other test files, changed the inputs and the
# table (measured: 628 against 646 valid of 10,808 after one new literal in the data module, then
# data.py). The fuzzers name their edge values themselves; the inputs depend only on this file and the
# pinned Hypothesis (its private API).
providers._get_local_constants = lambda: providers.Constants()


def fuzz(examples: int):
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,  # the same inputs on every run (for a given Hypothesis version)
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


def record(kind: str, valid: bool) -> None:
    COUNTS[kind] += 1
    VALID[kind] += valid


def run(kind: str, examples: int, test) -> None:
    """Run a hypothesis test and check it really generated `examples` inputs."""
    before = COUNTS[kind]
    test()
    assert COUNTS[kind] - before >= examples, f"{kind}: only {COUNTS[kind] - before} of {examples} inputs ran"


def put(path, blob: bytes) -> None:
    # Unlink first: rewriting a file in place makes ext4 flush it to disk (auto_da_alloc), 2-3 ms a time.
    path.unlink(missing_ok=True)
    path.write_bytes(blob)


# --- generic byte mutations -----------------------------------------------------------

HUGE32 = st.one_of(st.integers(0, 2**32 - 1), st.sampled_from([0, 1, 2**31 - 1, 2**31, 2**32 - 1]))
HUGE64 = st.one_of(st.integers(0, 2**64 - 1), st.sampled_from([0, 2**32, 2**63 - 1, 2**63, 2**64 - 1]))


@st.composite
def mutated(draw, blobs, head: int = 64):
    """A valid file from `blobs` with 1-4 edits, half of them in its first `head` bytes."""
    b = bytearray(draw(blobs))
    for _ in range(draw(st.integers(1, 4))):
        end = max(len(b) - 1, 0)
        pos = draw(st.one_of(st.integers(0, min(head, end)), st.integers(0, end)))
        op = draw(st.sampled_from(["flip", "set", "truncate", "insert", "delete", "u32be", "u32le", "u64le"]))
        if op == "flip" and b:
            b[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and b:
            b[pos] = draw(st.integers(0, 255))
        elif op == "truncate":
            del b[pos:]
        elif op == "insert":
            b[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del b[pos : pos + draw(st.integers(1, 16))]
        elif op in ("u32be", "u32le"):
            b[pos : pos + 4] = struct.pack(">I" if op == "u32be" else "<I", draw(HUGE32))
        elif op == "u64le":
            b[pos : pos + 8] = struct.pack("<Q", draw(HUGE64))
    return bytes(b)


# --- IDX ------------------------------------------------------------------------------


def idx_header(shape, dtype: int = 0x08) -> bytes:
    return b"\x00\x00" + bytes([dtype, len(shape)]) + struct.pack(f">{len(shape)}I", *shape)


@st.composite
def valid_idx(draw):
    shape = draw(st.lists(st.integers(0, 6), min_size=1, max_size=3))
    n = 1
    for d in shape:
        n *= d
    return idx_header(shape) + draw(st.binary(min_size=n, max_size=n))


@st.composite
def huge_idx(draw):
    """A header declaring up to 3 x (2**32 - 1) elements, over a short body."""
    ndim = draw(st.integers(0, 4))
    shape = draw(st.lists(HUGE32, min_size=ndim, max_size=ndim))
    dtype = draw(st.sampled_from([0x08, 0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E]))
    return b"\x00\x00" + bytes([dtype, ndim]) + struct.pack(f">{ndim}I", *shape) + draw(st.binary(max_size=32))


IDX_INPUTS = st.one_of(st.binary(max_size=64), mutated(valid_idx(), head=16), huge_idx())


def check_idx(raw: bytes) -> bool:
    """True for a valid result, False for a refusal; anything else fails the test."""
    try:
        t = parse_idx(raw, "fuzz")
    except DataError:
        return False
    assert t.dtype == torch.uint8 and 1 <= t.dim() <= 3
    assert 4 + 4 * t.dim() + t.numel() == len(raw) and t.flatten().tolist() == list(raw[4 + 4 * t.dim() :])
    return True


def test_idx_bytes_end_in_data_error_or_a_tensor():
    @fuzz(2000)
    @given(IDX_INPUTS)
    def check(raw):
        record("idx_bytes", check_idx(raw))

    run("idx_bytes", 2000, check)


@st.composite
def idx_file(draw, limit: int):
    """The bytes of a raw or gzipped IDX file: good, damaged, truncated, or a bomb."""
    kind = draw(st.sampled_from(["raw", "gzip", "gzip damaged", "gzip truncated", "gzip bomb", "gzip trailing"]))
    if kind == "gzip bomb":  # declares what it holds, but holds more than `limit` bytes
        n = draw(st.integers(limit - 64, 4 * limit))
        return gzip.compress(idx_header([n]) + bytes(n), mtime=0)
    raw = draw(IDX_INPUTS)
    if kind == "raw":
        return raw
    blob = gzip.compress(raw, mtime=0)
    if kind == "gzip damaged":
        return draw(mutated(st.just(blob), head=16))
    if kind == "gzip truncated":
        return blob[: draw(st.integers(0, len(blob) - 1))]
    if kind == "gzip trailing":
        return blob + draw(st.binary(min_size=1, max_size=24))
    return blob


def test_idx_files_end_in_data_error_or_a_tensor(tmp_path, monkeypatch):
    limit = 4096  # MAX_IDX_BYTES scaled down, so that bombs over it are cheap to make
    monkeypatch.setattr("lenet.data.idx.MAX_IDX_BYTES", limit)
    path = tmp_path / "train-images-idx3-ubyte.gz"

    @fuzz(1600)
    @given(idx_file(limit))
    def check(blob):
        put(path, blob)
        try:
            t = read_idx(path)
        except DataError as e:
            assert str(path) in str(e)
            return record("idx_files", False)
        assert t.dtype == torch.uint8 and t.numel() <= limit
        record("idx_files", True)

    run("idx_files", 1600, check)


# --- checkpoints ----------------------------------------------------------------------


@cache
def state_dicts() -> dict[str, dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    return {name: create_model(name).state_dict() for name in ("lenet", "lenet_wide")}


def safetensors_bytes(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> bytes:
    """A safetensors file whose header has its keys sorted.

    safetensors writes the metadata in the order of a Rust HashMap, which changes from process
    to process; mutations at a fixed offset would then hit other fields on every run.
    """
    from safetensors.torch import save

    blob = save({k: v.contiguous() for k, v in tensors.items()}, metadata=metadata)
    n = struct.unpack("<Q", blob[:8])[0]
    header = json.dumps(json.loads(blob[8 : 8 + n]), sort_keys=True, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)  # safetensors pads the header to 8 bytes
    return struct.pack("<Q", len(header)) + header + blob[8 + n :]


def lenet_metadata(config_text: str) -> dict[str, str]:
    return {"format": FORMAT, "lenet_version": "0.1.0", "model_config": config_text}


@cache
def good_checkpoints() -> tuple[bytes, ...]:
    return tuple(
        safetensors_bytes(sd, lenet_metadata(json.dumps(MODELS[name][0].to_dict())))
        for name, sd in state_dicts().items()
    )


def check_checkpoint(path) -> bool:
    try:
        model = load(path)
    except CheckpointError as e:
        assert str(path) in str(e) and "\n" not in str(e)
        return False
    assert isinstance(model, Classifier) and isinstance(model.net, LeNet) and not model.training
    assert count_parameters(model) == model.net.config.parameter_count <= MAX_PARAMETERS
    return True


@st.composite
def raw_safetensors(draw):
    """An 8-byte header length, then a header that is random bytes or almost JSON."""
    header = draw(
        st.one_of(
            st.binary(max_size=48),
            st.text(max_size=48).map(str.encode),
            st.sampled_from([b"{}", b'{"__metadata__": {}}', b'{"w": {"dtype": "F32", "shape": [1099511627776], '
                             b'"data_offsets": [0, 4]}}', b'{"w": {"dtype": "F32", "shape": [1],'
                             b' "data_offsets": [0, 18446744073709551615]}}']),  # fmt: skip
        )
    )
    length = draw(st.one_of(st.just(len(header)), HUGE64))
    return struct.pack("<Q", length) + header + draw(st.binary(max_size=16))


CHECKPOINT_BYTES = st.one_of(
    st.binary(max_size=128),
    raw_safetensors(),
    mutated(st.sampled_from(range(2)).map(lambda i: good_checkpoints()[i]), head=1024),
)


def test_checkpoint_bytes_end_in_checkpoint_error_or_a_model(tmp_path):
    path = tmp_path / "model.safetensors"

    @fuzz(1800)
    @given(CHECKPOINT_BYTES)
    def check(blob):
        put(path, blob)
        record("checkpoint_bytes", check_checkpoint(path))

    run("checkpoint_bytes", 1800, check)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)
SIZE = st.one_of(st.integers(-3, 5000), st.sampled_from([0, -1, 4096, 4097, 10**9, 2**63, 10**30]))
FIELD_VALUES = {
    "activation": st.sampled_from(["relu", "sigmoid", "tanh", "gelu", "swish", ""]),
    "pool": st.sampled_from(["max", "avg", "min"]),
    "batch_norm": st.booleans(),
    "padding": st.integers(-1, 3),
    "channels": st.lists(SIZE, min_size=0, max_size=3),
    "hidden": st.lists(SIZE, min_size=0, max_size=3),
    "num_classes": SIZE,
    "dropout": st.floats(-1, 2),
    "input_mean": st.none() | st.floats(),
    "input_std": st.none() | st.floats(),
    "flip_tta": st.booleans(),
    "shift_tta": st.integers(-1, 10) | st.booleans() | st.floats(0, 2),
}


@st.composite
def model_config_text(draw):
    """A registry config with some fields changed to wrong types, absurd sizes or garbage."""
    name = draw(st.sampled_from(sorted(state_dicts())))
    config = MODELS[name][0].to_dict()
    for key in draw(st.lists(st.sampled_from(sorted(FIELD_VALUES)), max_size=3, unique=True)):
        config[key] = draw(st.one_of(FIELD_VALUES[key], FIELD_VALUES[key], JSON))
    if draw(st.integers(0, 9)) == 0:
        config[draw(st.text(max_size=6))] = draw(JSON)  # an unknown option
    text = json.dumps(config)
    whole = draw(st.sampled_from(["config", "config", "config", "json", "cut", "deep"]))
    if whole == "json":
        text = json.dumps(draw(JSON))  # not a mapping, or a mapping of junk
    elif whole == "cut":
        text = text[: draw(st.integers(0, len(text)))]
    elif whole == "deep":
        text = "[" * 100_000 + "]" * 100_000
    return name, text


@st.composite
def mangled_tensors(draw, name: str):
    """The model's weights with some changed dtype or shape, missing, or extra."""
    tensors = dict(state_dicts()[name])
    for key in draw(st.lists(st.sampled_from(sorted(tensors)), max_size=3, unique=True)):
        op = draw(st.sampled_from(["dtype", "shape", "drop"]))
        if op == "dtype":
            dtype = draw(st.sampled_from([torch.float16, torch.bfloat16, torch.float64, torch.int8, torch.uint8,
                                          torch.int32, torch.int64, torch.bool, torch.float32]))  # fmt: skip
            tensors[key] = tensors[key].to(dtype)
        elif op == "shape":
            tensors[key] = torch.zeros(draw(st.lists(st.integers(0, 4), max_size=4)))
        else:
            del tensors[key]
    if draw(st.booleans()):
        extra = draw(st.text(min_size=1, max_size=8).filter(lambda k: k != "__metadata__"))
        tensors[extra] = torch.zeros(draw(st.integers(0, 3)))
    return tensors


@st.composite
def checkpoint_files(draw):
    name, text = draw(model_config_text())
    tensors = draw(st.one_of(st.just(state_dicts()[name]), mangled_tensors(name)))
    metadata = lenet_metadata(text)
    if draw(st.integers(0, 19)) == 0:
        metadata["format"] = draw(st.sampled_from(["", "lenet.model.v2", "pickle"]))
    return safetensors_bytes(tensors, metadata)


def test_checkpoint_configs_and_weights_end_in_checkpoint_error_or_a_model(tmp_path):
    KIND = "checkpoint_configs"  # noqa: N806
    path = tmp_path / "model.safetensors"

    @fuzz(1800)
    @given(checkpoint_files())
    def check(blob):
        put(path, blob)
        record(KIND, check_checkpoint(path))

    run(KIND, 1800, check)


def test_absurd_configs_are_refused_before_building(tmp_path, monkeypatch):
    """channels=(10**9, 1) would ask for ~100 GB: refused from the metadata alone."""
    built = []  # the device of every model the loader builds

    def spy(config):
        model = LeNet(config)
        built.append(next(model.parameters()).device.type)
        return model

    monkeypatch.setattr("lenet.runs.checkpoint.LeNet", spy)
    path = tmp_path / "m.safetensors"
    base = MODELS["lenet"][0].to_dict()
    for change in ({"channels": [10**9, 1]}, {"hidden": [4096, 4096], "channels": [4096, 4096]},
                   {"num_classes": 10**6}, {"channels": ["6", "16"]}, {"hidden": [-120, 84]}):  # fmt: skip
        path.write_bytes(safetensors_bytes(state_dicts()["lenet"], lenet_metadata(json.dumps({**base, **change}))))
        with pytest.raises(CheckpointError, match="bad model config"):
            load(path)
    assert built == []
    # A config under the limits (27.5 M parameters) whose weights do not fit it is refused
    # after a look at its shapes on the meta device, before its 110 MB of weights exist.
    change = {"channels": [4096, 64], "hidden": [4096, 4096]}
    path.write_bytes(safetensors_bytes(state_dicts()["lenet"], lenet_metadata(json.dumps({**base, **change}))))
    with pytest.raises(CheckpointError, match="do not fit"):
        load(path)
    assert built == ["meta"]


# --- images ---------------------------------------------------------------------------


def encode(img: Image.Image, fmt: str, **options) -> bytes:
    out = io.BytesIO()
    img.save(out, fmt, **options)
    return out.getvalue()


@cache
def good_images() -> tuple[bytes, ...]:
    """Small valid files in every format and mode the decoder meets."""
    gradient = Image.linear_gradient("L").resize((9, 7))
    blobs = []
    for size in ((1, 1), (9, 7), (28, 28)):
        grey = gradient.resize(size)
        rgb = Image.merge("RGB", (grey, grey.transpose(Image.Transpose.FLIP_LEFT_RIGHT), grey))
        rgba = rgb.copy()
        rgba.putalpha(grey)
        blobs += [
            encode(grey.convert("1"), "PNG"), encode(grey, "PNG"), encode(rgb, "PNG"), encode(rgba, "PNG"),
            encode(grey.convert("LA"), "PNG"), encode(grey.convert("I;16"), "PNG"),
            encode(rgb.convert("P"), "PNG"), encode(rgb.convert("P"), "PNG", transparency=0),
            encode(rgb, "JPEG"), encode(grey, "JPEG"), encode(rgb.convert("CMYK"), "JPEG"),
            encode(rgb, "JPEG", progressive=True), encode(rgb, "JPEG", exif=_rotated_exif()),
            encode(rgb, "GIF"), encode(grey, "GIF", save_all=True, append_images=[rgb.convert("L")], transparency=0),
            encode(rgb, "BMP"), encode(grey, "BMP"), encode(grey.convert("1"), "BMP"), encode(rgb.convert("P"), "BMP"),
            encode(rgba, "WEBP"), encode(rgb, "WEBP", lossless=True),
        ]  # fmt: skip
    return tuple(blobs)


def _rotated_exif():
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees
    return exif


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


@st.composite
def png_with_header(draw):
    """A PNG whose IHDR (correct CRC) declares any size, depth and colour type: bombs, zero size, 16-bit..."""
    side = st.one_of(st.integers(0, 40), st.sampled_from([1, 6324, 6325, 65535, 2**31 - 1, 2**32 - 1]))
    width, height = draw(side), draw(side)
    depth = draw(st.sampled_from([1, 2, 4, 8, 16, 3, 0]))
    colour = draw(st.sampled_from([0, 2, 3, 4, 6, 1, 7]))
    interlace = draw(st.sampled_from([0, 0, 1, 2]))
    chunks = [png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, interlace))]
    if draw(st.booleans()):
        chunks.append(png_chunk(b"PLTE", draw(st.binary(max_size=3 * 20))))
    if draw(st.booleans()):
        chunks.append(png_chunk(b"tRNS", draw(st.binary(max_size=8))))
    row = (width * 8 * depth + 7) // 8 + 1 if width <= 40 else 16
    body = bytes(row * min(height, 40)) if draw(st.booleans()) else draw(st.binary(max_size=64))
    chunks.append(png_chunk(b"IDAT", zlib.compress(body)))
    if draw(st.booleans()):
        chunks.append(png_chunk(b"IEND", b""))
    return b"\x89PNG\r\n\x1a\n" + b"".join(chunks)


MAGICS = [b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF89a", b"GIF87a", b"BM", b"II*\x00", b"MM\x00*", b"RIFF"]
IMAGE_INPUTS = st.one_of(
    st.binary(max_size=64),
    st.tuples(st.sampled_from(MAGICS), st.binary(max_size=64)).map(b"".join),
    mutated(st.sampled_from(good_images())),
    png_with_header(),
)


def test_images_end_in_image_error_or_28x28(tmp_path):
    KIND = "images"  # noqa: N806
    path = tmp_path / "photo.png"

    @fuzz(3600)
    @given(IMAGE_INPUTS)
    def check(blob):
        put(path, blob)
        try:
            x = load_image(path)
        except ImageError as e:
            assert str(path) in str(e) and "\n" not in str(e)
            return record(KIND, False)
        assert x.shape == (1, 28, 28) and x.dtype == torch.uint8
        record(KIND, True)

    run(KIND, 3600, check)


def test_every_good_image_decodes(tmp_path):
    """The mutations above start from files that really are valid."""
    for i, blob in enumerate(good_images()):
        (tmp_path / f"{i}.img").write_bytes(blob)
        assert load_image(tmp_path / f"{i}.img").shape == (1, 28, 28)


@pytest.mark.parametrize("fmt", ["TIFF", "EPS", "PCX", "ICO"])
def test_other_formats_are_never_decoded(tmp_path, fmt):
    """Pillow reads these too, but lenet does not try: libtiff prints to stderr, EPS runs Ghostscript."""
    path = tmp_path / f"x.{fmt.lower()}"
    Image.new("RGB", (16, 16)).save(path, fmt)
    with pytest.raises(ImageError, match="not a PNG, JPEG, GIF, BMP, WEBP image"):
        load_image(path)


# --- your own data sets: folder: and csv: -------------------------------------------------

# A folder data set's entries: what each file in a class folder is. Only the mutated ones may or
# may not decode; every other kind is known to be read ("image", "link_in") or left out.
ENTRIES = ["image", "image", "image", "image", "mutated", "junk", "empty", "link_out", "broken_link", "link_in",
           "subdir", "dotfile"]  # fmt: skip
READ, NEVER_COUNTED = {"image", "link_in"}, {"subdir", "dotfile"}  # ignored: nested folders, hidden files


@cache
def outside_image() -> bytes:
    """The file every link out of the folder points at: a checkerboard no generated image is."""
    board = Image.fromarray(((torch.arange(28 * 28).reshape(28, 28) // 3 % 2) * 255).to(torch.uint8).numpy())
    return encode(board, "PNG")


@st.composite
def folder_layout(draw):
    """{class path: [entry kinds]}: 0-4 classes, flat or train/ and test/ (same classes, or not), some empty."""
    names = draw(st.lists(st.sampled_from(["a", "b", "c", "d"]), min_size=draw(st.sampled_from([0, 2, 2, 2])),
                          max_size=4, unique=True))  # fmt: skip
    # Mostly images, so that many data sets are valid and the checks on a valid one run often.
    files = st.lists(st.one_of(st.just("image"), st.sampled_from(ENTRIES)), max_size=6)
    if draw(st.integers(0, 3)):
        return {name: draw(files) for name in names}
    test_names = names if draw(st.integers(0, 4)) else draw(st.lists(st.sampled_from(["a", "b", "e"]), max_size=3, unique=True))
    return {**{f"train/{n}": draw(files) for n in names}, **{f"test/{n}": draw(files) for n in test_names}}


@st.composite
def folder_inputs(draw):
    layout = draw(folder_layout())
    blobs = {(cls, i): draw(st.sampled_from(good_images()) if kind == "image" else
                            mutated(st.sampled_from(good_images())) if kind == "mutated" else st.binary(max_size=48))
             for cls, kinds in layout.items() for i, kind in enumerate(kinds)}  # fmt: skip
    linked_out_class = bool(layout) and draw(st.integers(0, 15)) == 0
    return layout, blobs, linked_out_class, draw(st.booleans())


def write_folder(root, layout, blobs, linked_out_class) -> None:
    root.mkdir()
    (root / ".pool.png").write_bytes(good_images()[1])  # what links within the folder point at (hidden: not data)
    (root.parent / "outside.png").write_bytes(outside_image())
    for cls, kinds in layout.items():
        folder = root / cls
        if linked_out_class and cls == next(iter(layout)):  # the class folder itself is a link out of the folder
            target = root.parent / "outside-class"
            target.mkdir(exist_ok=True)
            shutil.copy(root.parent / "outside.png", target / "x.png")
            folder.parent.mkdir(parents=True, exist_ok=True)
            folder.symlink_to(target)
            continue
        folder.mkdir(parents=True)
        for i, kind in enumerate(kinds):
            path = folder / f"{i}.png"
            if kind in ("image", "mutated", "junk"):
                path.write_bytes(blobs[cls, i])
            elif kind == "empty":
                path.write_bytes(b"")
            elif kind == "link_out":
                path.symlink_to(root.parent / "outside.png")
            elif kind == "broken_link":
                path.symlink_to(root.parent / "nowhere.png")
            elif kind == "link_in":
                path.symlink_to(root / ".pool.png")
            elif kind == "subdir":
                (folder / f"{i}").mkdir()
                (folder / f"{i}" / "x.png").write_bytes(good_images()[1])
            else:
                (folder / f".{i}.png").write_bytes(b"hidden")


def check_folder(root, layout, linked_out_class, skip_bad) -> bool:
    """A valid data set holds every file that can be read and names every other (with --skip-bad), and
    nothing from outside the folder; anything else is one line of DataError."""
    try:
        data = load_dataset(f"folder:{root}", skip_bad=skip_bad)
    except DataError as e:
        assert "\n" not in str(e) and str(e).startswith("folder:"), str(e)
        return False
    images = torch.cat([data.train_images, data.test_images])
    assert images.dtype == torch.uint8 and images.shape[1:] in ((1, 28, 28), (3, 32, 32)) and len(data.test_labels) >= 1
    labels = torch.cat([data.train_labels, data.test_labels])
    assert 2 <= len(data.spec.classes) <= MAX_CLASSES and 0 <= int(labels.min()) and int(labels.max()) < len(data.spec.classes)
    assert not linked_out_class
    counted = [kind for kinds in layout.values() for kind in kinds if kind not in NEVER_COUNTED]
    assert len(images) + len(data.skipped) == len(counted)  # each file read, or named as left out
    assert sum(kind in READ for kind in counted) <= len(images) <= sum(kind in READ | {"mutated"} for kind in counted)
    assert skip_bad or not data.skipped
    outside = load_image(root.parent / "outside.png")
    assert not any(torch.equal(image, outside) for image in images)  # no link out of the folder was followed
    return True


def test_folder_datasets_end_in_data_error_or_a_data_set(tmp_path):
    KIND = "folder_datasets"  # noqa: N806
    examples = iter(range(10**6))

    @fuzz(400)
    @given(folder_inputs())
    def check(example):
        layout, blobs, linked_out_class, skip_bad = example
        base = tmp_path / str(next(examples))
        base.mkdir()
        try:
            write_folder(base / "set", layout, blobs, linked_out_class)
            record(KIND, check_folder(base / "set", layout, linked_out_class, skip_bad))
        finally:
            shutil.rmtree(base)

    run(KIND, 400, check)


# A CSV's label cells: good, out of bounds (negative, MAX_CLASSES, 10^7, 10^12, 2^63, 2^70) or not whole numbers.
LABELS = st.one_of(st.integers(0, 3), st.integers(0, 3),
                   st.sampled_from(["-1", "999", "1000", str(10**7), str(10**12), str(2**63), str(2**70), "1.5", "",
                                    "x", " 2", "1e3", "9" * 5000]))  # fmt: skip
PIXELS = st.one_of(st.integers(0, 255), st.sampled_from(["-1", "256", str(2**70), "nan", "", "3.0"]))


@st.composite
def csv_rows(draw, max_rows=10):
    """Rows of a label and 784 pixels, some with a bad label, a bad pixel or the wrong length."""
    rows = []
    for _ in range(draw(st.integers(0, max_rows))):
        label = draw(LABELS) if draw(st.integers(0, 9)) == 0 else len(rows) % 3  # mostly good rows: valid sets too
        pixels = [str((i * 37 + len(rows)) % 256) for i in range(784)]
        if draw(st.integers(0, 19)) == 0:
            pixels[draw(st.integers(0, 783))] = str(draw(PIXELS))
        if draw(st.integers(0, 19)) == 0:
            pixels = pixels[: draw(st.sampled_from([0, 1, 783, 784]))] + ["0"] * draw(st.integers(0, 2))
        rows.append(",".join([str(label), *pixels]))
    header = ["label," + ",".join(f"pixel{i}" for i in range(1, 785))] if draw(st.booleans()) else []
    return "\n".join(header + rows) + ("\n" if draw(st.booleans()) else "")


@st.composite
def csv_inputs(draw):
    """One file, or a directory of *train*.csv and *test*.csv (and sometimes another file, or none), and classes.txt."""
    if draw(st.booleans()):
        files = {"all.csv": draw(csv_rows())}
    else:
        names = draw(st.sampled_from([["train.csv", "test.csv"], ["x_train.csv", "x_test.csv", "y_train.csv"],
                                      ["train.csv"]]))  # fmt: skip
        files = {name: draw(csv_rows()) for name in names}
    if draw(st.integers(0, 3)) == 0:
        files["classes.txt"] = "\n".join(draw(st.lists(st.sampled_from(["cat", "dog", "", "ant", "bee", " "]), max_size=6)))
    return files


def check_csv(path) -> bool:
    try:
        data = load_dataset(f"csv:{path}")
    except DataError as e:
        assert "\n" not in str(e) and str(path if path.is_dir() else path.parent) in str(e), str(e)  # or classes.txt
        return False
    labels = torch.cat([data.train_labels, data.test_labels])
    assert data.train_images.dtype == torch.uint8 and data.train_images.shape[1:] == (1, 28, 28)
    assert len(labels) == len(data.train_images) + len(data.test_images) >= 2
    assert 2 <= len(data.spec.classes) <= MAX_CLASSES and 0 <= int(labels.min()) and int(labels.max()) < len(data.spec.classes)
    return True


@pytest.mark.timeout(120)  # a label of 10**12 made that many class names: a hang, which this fails
def test_csv_datasets_end_in_data_error_or_a_data_set(tmp_path):
    KIND = "csv_datasets"  # noqa: N806
    examples = iter(range(10**6))

    @fuzz(600)
    @given(csv_inputs())
    def check(files):
        base = tmp_path / str(next(examples))
        base.mkdir()
        try:
            for name, text in files.items():
                (base / name).write_text(text)
            record(KIND, check_csv(base / "all.csv" if "all.csv" in files else base))
        finally:
            shutil.rmtree(base)

    run(KIND, 600, check)


# --- memory ---------------------------------------------------------------------------

# Each input declares far more memory than it may use (IDX dimensions of 2**32, a 256 MB gzip
# bomb against the 64 MB limit, a 2**31 x 2**31 PNG, channels of 10**9, a 38 M parameter model
# (154 MB) over weights that do not fit it, a safetensors header of 2**63 bytes) and is read in a
# fresh interpreter whose address space may grow by 64 MB only (256 MB for the gzip bomb), set
# with RLIMIT_AS: each must be refused within that, and an allocator failure (RuntimeError,
# MemoryError) fails the test. The one input that is accepted, a 16-bit RGBA PNG just under the
# 40 M pixel limit, must decode within 400 MB.
MEMORY_SCRIPT = textwrap.dedent("""
    import gzip, json, resource, struct, sys, zlib
    from pathlib import Path
    import torch
    from lenet import load, load_image, save_model, create_model
    from lenet.data.idx import read_idx
    from lenet.core.errors import LenetError

    tmp = Path(sys.argv[1])
    save_model(create_model("lenet"), tmp / "ok.safetensors")
    load(tmp / "ok.safetensors")(torch.zeros(2, 1, 28, 28))  # warm up torch's allocator and threads

    def limit(mb):  # the soft limit only, so that the next input can have its own
        vm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmSize"))
        resource.setrlimit(resource.RLIMIT_AS, (vm * 1024 + mb * 2**20, resource.RLIM_INFINITY))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    def png(w, h, body=b""):  # 16-bit RGBA, so that Pillow would need 4 bytes a pixel
        ihdr = chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 6, 0, 0, 0))
        return b"\\x89PNG\\r\\n\\x1a\\n" + ihdr + chunk(b"IDAT", zlib.compress(body)) + chunk(b"IEND", b"")

    def bomb(n):  # n zero bytes behind an IDX header that declares them, gzipped in slices
        z = zlib.compressobj(9, zlib.DEFLATED, 31)
        out = [z.compress(b"\\x00\\x00\\x08\\x01" + struct.pack(">I", n % 2**32))]
        out += [z.compress(bytes(2**24)) for _ in range(n // 2**24)]
        return b"".join(out) + z.flush()

    def checkpoint(change):  # the good file, with its model config changed
        raw = (tmp / "ok.safetensors").read_bytes()
        n = struct.unpack("<Q", raw[:8])[0]
        header = json.loads(raw[8 : 8 + n])
        config = json.loads(header["__metadata__"]["model_config"])
        header["__metadata__"]["model_config"] = json.dumps({**config, **change})
        text = json.dumps(header).encode()
        return struct.pack("<Q", len(text)) + text + raw[8 + n :]

    inputs = [  # name, bytes, MB it may take, whether it is refused
        ("idx-3-dims.gz", gzip.compress(b"\\x00\\x00\\x08\\x03" + b"\\xff" * 12 + bytes(100)), 64, True),
        ("idx-bomb.gz", bomb(256 * 2**20), 256, True),
        ("png-2g.png", png(2**31 - 1, 2**31 - 1), 64, True),
        ("png-zero.png", png(0, 0), 64, True),
        ("channels-1e9.safetensors", checkpoint({"channels": [10**9, 1]}), 64, True),
        ("38M-parameters.safetensors", checkpoint({"channels": [4096, 128], "hidden": [4096, 4096]}), 64, True),
        ("header-2-63.safetensors", struct.pack("<Q", 2**63) + b"{}", 64, True),
        ("png-40m.png", png(6324, 6324, bytes(6324 * 8 + 1) * 6324), 400, False),
    ]
    for name, blob, mb, refused in inputs:
        (tmp / name).write_bytes(blob)
        reader = load if name.endswith(".safetensors") else load_image if name.endswith(".png") else read_idx
        limit(mb)
        try:
            reader(tmp / name)
            print(name, "read within", mb, "MB")
        except LenetError as e:
            print(name, "refused within", mb, "MB:", e)
        finally:
            resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY,) * 2)
    print("peak rss MB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
""")


def test_huge_declared_sizes_stay_within_a_memory_limit(tmp_path):
    proc = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, str(tmp_path)],
                          capture_output=True, text=True, timeout=120, cwd=REPO)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("refused within") == 7 and "png-40m.png read within" in proc.stdout, proc.stdout
    names = ("idx-3-dims", "idx-bomb", "png-2g", "png-zero", "channels-1e9", "38M-parameters", "header-2-63", "png-40m")
    for name in names:
        record("memory", name == "png-40m")


# --- run files: each file of a run or a sweep, mutated, through every command that reads it --------------

BAD_VALUES = ["x", "", 3, -1, 0, 1.5, 2**70, 10**30, float("nan"), float("inf"), float("-inf"), None, True, False,
              [], {}, [1, 2], {"a": 1}, ["x"], [[[]]]]  # fmt: skip
DEEP_JSON = b"[" * 5000 + b"]" * 5000


def json_nodes(value, path=()):
    """Every node of a JSON value: (path, value), the whole document first."""
    yield path, value
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        yield from json_nodes(item, (*path, key))


def replaced(value, path, new):
    if not path:
        return new
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[path[0]] = replaced(value[path[0]], path[1:], new)
    return copy


def removed(value, path):
    copy = dict(value) if isinstance(value, dict) else list(value)
    if len(path) == 1:
        del copy[path[0]]
    else:
        copy[path[0]] = removed(value[path[0]], path[1:])
    return copy


@st.composite
def mutated_json(draw, text: str) -> bytes:
    """A valid JSON document with one edit of a node or of the whole file."""
    document = json.loads(text)
    nodes = list(json_nodes(document))
    op = draw(st.sampled_from(["value", "value", "value", "delete", "extra", "wrap", "unwrap", "file"]))
    path, node = nodes[draw(st.integers(0, len(nodes) - 1))]
    if op == "delete" and path:
        document = removed(document, path)
    elif op == "extra" and isinstance(node, dict):
        document = replaced(document, path, {**node, draw(st.sampled_from(["extra", "", "0"])): draw(st.sampled_from(BAD_VALUES))})
    elif op == "wrap":
        document = replaced(document, path, [node])  # a list for an object
    elif op == "unwrap" and isinstance(node, list) and node:
        document = replaced(document, path, node[0])
    elif op == "file":
        raw = json.dumps(document).encode()
        return draw(st.sampled_from([b"", b"null", b"[]", b'"x"', b"NaN", DEEP_JSON, raw[: len(raw) // 2],
                                     raw[:-1] + b"\xff\xfe}", b"\xef\xbb\xbf" + raw]))  # fmt: skip
    else:
        document = replaced(document, path, draw(st.sampled_from(BAD_VALUES)))
    return json.dumps(document).encode()  # NaN and Infinity as Python writes them


@st.composite
def mutated_csv(draw, text: str) -> bytes:
    lines = text.splitlines()
    rows = [line.split(",") for line in lines]
    op = draw(st.sampled_from(["cell", "cell", "cell", "drop column", "add column", "no header", "short row", "utf8"]))
    r = draw(st.integers(0, len(rows) - 1))
    c = draw(st.integers(0, len(rows[0]) - 1))
    if op == "cell":
        rows[r][c] = draw(st.sampled_from(["x", "nan", "inf", "-inf", "1e400", "-1", "", str(2**70), "1.5", "test"]))
    elif op == "drop column":
        rows = [row[:c] + row[c + 1 :] for row in rows]
    elif op == "add column":
        rows = [row + ["extra" if i == 0 else "1"] for i, row in enumerate(rows)]
    elif op == "no header":
        rows = rows[1:]
    elif op == "short row":
        rows[r] = rows[r][:c]
    else:
        return "\n".join(",".join(row) for row in rows).encode() + b"\xff\n"
    return ("\n".join(",".join(row) for row in rows) + "\n").encode()


STATE_BAD = [None, 3, "x", [], {}, 1.5, torch.zeros(3), torch.zeros(2, 2, dtype=torch.float64), torch.ones(0, dtype=torch.uint8)]


@st.composite
def mutated_state(draw, saved: dict) -> dict | bytes:
    """train_state.pt's dictionary with one key of it (or of its rng) deleted or given another value."""
    if draw(st.integers(0, 9)) == 0:
        return b"PK\x03\x04" + draw(st.binary(max_size=64))  # a zip header and then nothing
    saved = {**saved, "rng": dict(saved["rng"])}
    where = saved["rng"] if draw(st.booleans()) else saved
    key = draw(st.sampled_from(sorted(where)))
    if draw(st.integers(0, 3)) == 0:
        del where[key]
    else:
        where[key] = draw(st.sampled_from(STATE_BAD))
    return saved


class Stop(Exception):
    pass


def command_ends_well(argv: list[str]) -> bool:
    """Run `lenet ARGV` in this process: True for exit 0 (or a server that got as far as its socket), False
    for a refusal with one line; a traceback fails the test."""
    from lenet.cli import main

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as err:
        code = main(argv)
    lines = err.getvalue().strip().splitlines()
    if code == 0:
        return True
    assert code == 1 and lines and lines[-1].startswith(f"lenet {argv[0]}: error: "), (argv, code, err.getvalue())
    assert "Traceback" not in err.getvalue()
    return "stopped where the server would listen" in lines[-1] or "stopped where Ray would start" in lines[-1]


@pytest.fixture(scope="module")
def run_files(tmp_path_factory):
    """A finished run and its unfinished copy on a small folder, an export, and a sweep of two trials (one
    finished, one failed): the valid files that the run-file fuzzing mutates."""
    import dataclasses

    from conftest import make_folder
    from lenet import TrainConfig, get_recipe, train
    from lenet.data.load import load_dataset
    from lenet.inference.export import export
    from lenet.runs.sweeps import SessionRecord, write_failed, write_sessions, write_trials
    from lenet.sweep.plan import Plan, write_plan

    tmp = tmp_path_factory.mktemp("run-files")
    root = make_folder(tmp / "shapes", {"bars": 10, "blocks": 10})
    data = load_dataset(f"folder:{root}")
    recipe = dataclasses.replace(get_recipe("seed"), model="lenet", epochs=1, batch_size=8)
    config = TrainConfig(recipe=recipe, dataset=f"folder:{root}", device="cpu", out=str(tmp), name="run",
                         val_split=4, progress=False)  # fmt: skip
    run = train(config, data=data).run_dir
    # What differs between two pytest invocations (the command line, the time) is fixed, so that every run
    # mutates the same documents and counts the same (RELIABILITY.md's table).
    saved = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**saved, "environment": {"command": ["lenet"]}, "started": ""}))
    export(run, "onnx", dataset=f"folder:{root}")
    unfinished = shutil.copytree(run, tmp / "unfinished")
    (unfinished / "summary.json").unlink()
    sweep = tmp / "sweep"
    space = {"base": recipe.to_dict(), "base_name": "seed", "axes": [{"field": "lr", "kind": "grid", "values": [0.01, 0.02]}],
             "trials": None, "seeds": 1, "first_seed": 0, "seeds_per_trial": 1, "val_split": 4, "metric": "final",
             "sample_seed": 0, "max_failures": 3, "asha": None, "train_subset": None, "test_subset": None,
             "name": "sweep", "dataset": f"folder:{root}", "search": "random", "max_concurrent": None}  # fmt: skip
    plan = Plan(str(sweep), space, [{"lr": 0.01}, {"lr": 0.02}], 1.0, 0.0, data.spec.sha256)
    sweep.mkdir()
    write_plan(plan)
    shutil.copytree(run, sweep / "trial-0000")
    (sweep / "trial-0001").mkdir()
    write_failed(sweep / "trial-0001", LenetError("diverged"))
    write_trials(sweep, {0: "finished", 1: "finished"})
    write_sessions(sweep, [SessionRecord(experiment="tune", storage=str(sweep))])
    return types.SimpleNamespace(root=root, run=run, unfinished=unfinished, sweep=sweep, tmp=tmp,
                                 image=next((root / "bars").iterdir()))  # fmt: skip


@pytest.fixture
def stopped_before_listening(monkeypatch):
    """`serve` and `sweep` stop where they would open a socket or start Ray: start-up is what is fuzzed. The
    report draws only its learning curves, the one figure made from a run's files (the others are of the model
    and the test images, the same for every input, and take most of a report's two seconds)."""
    import lenet.inference.serve
    import lenet.insight.report
    import lenet.sweep.driver

    def curves_only(plots, run, *rest):
        return {"curves": plots.png_bytes(plots.curves(run.metrics, f"{run.name}: learning curves"))}

    monkeypatch.setattr(lenet.insight.report, "draw_figures", curves_only)

    def stop_serving(*args):
        raise ServeError("stopped where the server would listen")

    def stop_ray(*args):
        raise LenetError("stopped where Ray would start")

    monkeypatch.setattr(lenet.inference.serve, "bind", stop_serving)
    monkeypatch.setattr(lenet.sweep.driver, "_connect", stop_ray)


def fuzz_run_file(kind: str, examples: int, strategy, place, commands) -> None:
    """Each drawn file put in place by `place(blob) -> paths`, then every command of `commands(paths)`."""

    @fuzz(examples)
    @given(strategy)
    def check(blob):
        paths = place(blob)
        try:
            record(kind, all([command_ends_well(argv) for argv in commands(paths)]))
        finally:
            shutil.rmtree(paths.base, ignore_errors=True)

    run(kind, examples, check)


def run_copy(files, tmp_path, source=None):
    base = tmp_path / f"case-{COUNTS.total()}"
    return types.SimpleNamespace(base=base, run=shutil.copytree(source or files.run, base / "run"),
                                 other=shutil.copytree(files.run, base / "other"))  # fmt: skip


def file_commands(files, run: Path, other: Path) -> dict[str, list[str]]:
    dataset = ["--dataset", f"folder:{files.root}"]
    return {
        "eval": ["eval", str(run), *dataset],
        "report": ["report", str(run), *dataset, "--out", str(run.parent / "report")],
        "compare": ["compare", str(run), str(other), "--out", str(run.parent / "compare.html")],
        "predict": ["predict", str(run), str(files.image), "--top-k", "1"],
        "serve": ["serve", str(run), *dataset],
        "resume": ["train", "--resume", str(run), *dataset, "--no-progress", "--no-report"],
        "export": ["export", str(run), *dataset],
    }


@pytest.mark.tripwires  # serve's bind and the sweep's Ray are stops, reached only by inputs that get that far
@pytest.mark.parametrize("name, kind, examples, readers", [
    ("config.json", "run_config", 80, ("eval", "report", "compare", "predict", "serve", "resume")),
    ("summary.json", "run_summary", 60, ("report", "compare", "serve", "resume")),
    ("export.json", "run_exports", 30, ("export",)),
])  # fmt: skip
def test_run_json_files_end_in_one_line_or_a_result(run_files, tmp_path, stopped_before_listening, name, kind,
                                                      examples, readers):  # fmt: skip
    text = (run_files.run / name).read_text()

    def place(blob):
        case = run_copy(run_files, tmp_path)
        put(case.run / name, blob)
        return case

    def commands(case):
        every = file_commands(run_files, case.run, case.other)
        if name == "config.json":  # an unfinished run: a resume reads config.json to train on
            (case.run / "summary.json").unlink()
        return [every[r] for r in readers]

    fuzz_run_file(kind, examples, mutated_json(text), place, commands)


@pytest.mark.tripwires
def test_metrics_csv_ends_in_one_line_or_a_result(run_files, tmp_path, stopped_before_listening):
    text = (run_files.run / "metrics.csv").read_text()

    def place(blob):
        case = run_copy(run_files, tmp_path)
        put(case.run / "metrics.csv", blob)
        return case

    def commands(case):
        every = file_commands(run_files, case.run, case.other)
        return [every["report"], every["compare"]]

    fuzz_run_file("run_metrics", 50, mutated_csv(text), place, commands)


def test_train_state_ends_in_one_line_or_a_resumed_run(run_files, tmp_path):
    saved = torch.load(run_files.unfinished / "train_state.pt", weights_only=True)

    def place(state):
        case = run_copy(run_files, tmp_path, run_files.unfinished)
        target = case.run / "train_state.pt"
        target.unlink()
        if isinstance(state, bytes):
            target.write_bytes(state)
        else:
            torch.save(state, target)
        return case

    def commands(case):
        return [file_commands(run_files, case.run, case.other)["resume"]]

    fuzz_run_file("run_state", 60, mutated_state(saved), place, commands)


@pytest.mark.tripwires
def test_sweep_records_end_in_one_line_or_a_table(run_files, tmp_path, stopped_before_listening):
    pytest.importorskip("ray")
    files = ["plan.json", "trials.json", "sessions.json", "trial-0001/failed.json"]
    texts = {name: (run_files.sweep / name).read_text() for name in files}
    strategy = st.sampled_from(files).flatmap(lambda name: st.tuples(st.just(name), mutated_json(texts[name])))

    def place(drawn):
        name, blob = drawn
        base = tmp_path / f"case-{COUNTS.total()}"
        sweep = shutil.copytree(run_files.sweep, base / "sweep")
        put(sweep / name, blob)
        return types.SimpleNamespace(base=base, sweep=sweep)

    def commands(case):
        return [["sweep", "--resume", str(case.sweep), "--dataset", f"folder:{run_files.root}"]]

    fuzz_run_file("sweep_records", 60, strategy, place, commands)


# --- RELIABILITY.md's table -----------------------------------------------------------


def fuzz_table() -> str:
    """RELIABILITY.md's fuzzing table, from this run's counts."""
    import hypothesis
    import PIL
    import safetensors

    rows = ["| input kind | generated | valid results | refused with lenet's error | `-k` |",
            "| --- | ---: | ---: | ---: | --- |"]  # fmt: skip
    for key, (_, description) in KINDS.items():
        n, valid = COUNTS[key], VALID[key]
        rows.append(f"| {description} | {n:,} | {valid:,} | {n - valid:,} | `{key}` |")
    n, valid = sum(COUNTS[k] for k in KINDS), sum(VALID[k] for k in KINDS)
    rows.append(f"| **in all** | **{n:,}** | **{valid:,}** | **{n - valid:,}** | |")
    return (
        f"Counts of `python -m pytest tests/test_fuzz.py --write-fuzz-table`, with Hypothesis "
        f"{hypothesis.__version__} (pinned in pyproject.toml's dev extra: another version generates other inputs), "
        f"Pillow {PIL.__version__} and safetensors {safetensors.__version__} (they decide which inputs are valid).\n\n"
        + "\n".join(rows) + "\n"
    )


def test_reliability_md_holds_this_runs_table(request):
    """Last in this file: the table in RELIABILITY.md is the one this run gives (derandomized: every run gives it)."""
    if set(COUNTS) != set(KINDS):
        pytest.skip("only part of the fuzzing ran; the table needs all of it")
    document = REPO / "RELIABILITY.md"
    if request.config.getoption("write_fuzz_table"):
        write_section(document, TABLE, fuzz_table())
    assert read_section(document, TABLE) == fuzz_table(), (
        "RELIABILITY.md's fuzzing table is not this run's: "
        "python -m pytest tests/test_fuzz.py --write-fuzz-table writes it (and say why the counts changed)"
    )
