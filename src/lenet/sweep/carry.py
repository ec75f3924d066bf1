"""How a trial's run directories travel: in Ray Tune's checkpoints, between the node that trains and
the driver's --out, so no two machines need to share a disk.

A trial trains its runs in a scratch directory of its own node and reports, after every epoch, a
checkpoint holding those run directories (train state, records, weights). Tune persists it to its
storage (the sweep directory, or --storage); the driver copies it into --out at once; a retried
trial starts from it on whatever node Ray chose. A resumed sweep hands each unfinished trial the
run directories in --out through Ray's object store.

Only the run directories a trial owns are ever read from a checkpoint, at the paths lenet expects:
a checkpoint's own file names choose nothing.
"""

from __future__ import annotations

import io
import os
import shutil
import stat
import tarfile
from pathlib import Path

from lenet.core.errors import LenetError
from lenet.sweep.plan import Plan, run_failed


def unit_runs(plan: Plan, unit: int) -> list[Path]:
    """The run directories of Tune trial `unit`, relative to a sweep directory (or a scratch, a checkpoint)."""
    u = plan.units()[unit]
    return [plan.run_dir(u.configuration, seed).relative_to(plan.directory) for seed in u.seeds]


def pack(plan: Plan, unit: int, source: Path, into: Path) -> None:
    """Copy trial `unit`'s run directories that exist under `source` into `into` (a checkpoint's directory)."""
    for relative in unit_runs(plan, unit):
        if (source / relative).is_dir():
            shutil.copytree(source / relative, into / relative, dirs_exist_ok=True)


def unpack(plan: Plan, unit: int, source: Path, into: Path) -> None:
    """Put trial `unit`'s run directories found under `source` in place under `into`, each swapped in whole:
    a reader sees the old run directory or the new one, never a mixture."""
    for relative in unit_runs(plan, unit):
        if not (source / relative).is_dir():
            continue
        target = into / relative
        incoming, old = target.with_name(f".{target.name}.incoming"), target.with_name(f".{target.name}.old")
        for leftover in (incoming, old):  # of a driver killed mid-copy
            shutil.rmtree(leftover, ignore_errors=True)
        _refuse_links(source, relative)
        shutil.copytree(source / relative, incoming)
        if target.exists():
            target.rename(old)
        incoming.rename(target)
        shutil.rmtree(old, ignore_errors=True)


def _refuse_links(source: Path, relative: Path) -> None:
    """Nothing but directories and regular files at `source / relative`, on the way down to it too: copytree
    would follow a link and copy whatever it points at (a file of the driver's, say), where the tar path's
    filter="data" keeps links inside the scratch. A pipe or a device is refused with them."""
    way_down = [source / part for part in reversed(relative.parents) if part != Path(".")]
    for path in way_down + [source / relative]:
        _plain(path, stat.S_ISDIR)
    for root, directories, files in os.walk(source / relative):  # os.walk never goes down a link
        for name in directories + files:
            _plain(Path(root) / name, stat.S_ISDIR if name in directories else stat.S_ISREG)


def _plain(path: Path, is_kind) -> None:
    mode = path.lstat().st_mode
    if not is_kind(mode):
        what = "a link" if stat.S_ISLNK(mode) else "not a regular file or directory"
        raise LenetError(f"{path}: {what} in a checkpoint's run directory (only files and directories are copied)")


def carried(plan: Plan, units: list[int]) -> dict[int, bytes]:
    """For a resumed sweep: each unfinished trial's run directories in --out, as a tar (through the object store).
    A failed run (failed.json) is left behind, so that it trains again from its start; the new run directory
    replaces it in --out as its first checkpoint arrives."""
    found = {}
    for unit in units:
        present = [r for r in unit_runs(plan, unit)
                   if (Path(plan.directory) / r).is_dir() and not run_failed(Path(plan.directory) / r)]  # fmt: skip
        if not present:
            continue
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            for relative in present:
                tar.add(Path(plan.directory) / relative, arcname=str(relative))
        found[unit] = buffer.getvalue()
    return found


def restore(plan: Plan, unit: int, checkpoint_dir: Path | None, tar: bytes | None, scratch: Path) -> None:
    """Into a trial's scratch: its run directories from Tune's checkpoint (a retry), else from what a resumed
    sweep carried (the driver's --out), else nothing (a fresh start)."""
    if checkpoint_dir is not None:
        unpack(plan, unit, checkpoint_dir, scratch)
    elif tar is not None:
        with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
            archive.extractall(scratch, filter="data")  # paths and links kept inside the scratch
