"""Atomic writes: the old file or the new one whole, never a temporary file left, the usual permissions."""

import os
import stat

import pytest

from lenet.core.files import atomic_open, write_bytes, write_json


@pytest.fixture
def umask():
    """Set the process's umask for one test, and put the old one back."""
    old = os.umask(0o022)
    yield lambda mask: os.umask(mask)
    os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_files_get_the_mode_the_umask_gives_at_write_time(tmp_path, umask, mask, expected):
    umask(mask)  # set after lenet.core.files was imported: the mode follows the umask of the moment
    write_bytes(tmp_path / "a.bin", b"x")
    write_json(tmp_path / "a.json", {"a": 1})
    assert mode(tmp_path / "a.bin") == mode(tmp_path / "a.json") == expected


def test_a_rewrite_replaces_the_file_whole_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "state.json"
    write_json(path, {"epoch": 1})
    write_json(path, {"epoch": 2})
    assert path.read_text() == '{\n  "epoch": 2\n}\n' and os.listdir(tmp_path) == ["state.json"]


def test_a_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "model.bin"
    write_bytes(path, b"old weights")
    with pytest.raises(RuntimeError), atomic_open(path) as f:
        f.write(b"half of the new")
        raise RuntimeError("killed mid-write")
    assert path.read_bytes() == b"old weights" and os.listdir(tmp_path) == ["model.bin"]

