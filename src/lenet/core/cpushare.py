"""The lenet processes busy on this machine, so that a training started beside them takes its share of the
cores instead of all of them.

Two trainings with PyTorch's default of one thread per core ran at 0.13-0.16x their speed alone on two cores:
OpenMP's threads spin at every barrier, and a thread that loses its core holds its siblings up. One thread
each kept both at 0.50-0.56x; no wait policy or spin count did (BENCHMARKS.md, "Trial threads and the
OpenMP wait policy"). So each lenet training registers here while it runs, and one that starts beside busy
ones takes cores // (1 + busy) threads. The choice is made once, at the start, and recorded with the run
(config.json's engine.threads), so that the run computes the same numbers when resumed: a thread count
changed mid-run would change the floats' summation order, and the run would no longer be reproducible.

A process counts as busy when it used at least BUSY_SHARE of a core over a short look (a server waiting
for requests does not). The registry is a directory of one file per process, named by its pid and holding
its start time, so that a pid reused by another process is not taken for it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

REGISTRY_ENV = "LENET_CPU_REGISTRY"  # another directory for the registry (tests)
BUSY_SHARE = 0.25  # of a core, over the look: a training uses about 1-2 cores, an idle server about 0
LOOK_S = 0.2  # seconds the neighbours' CPU time is watched, only when there are any
TICKS = os.sysconf("SC_CLK_TCK")


def registry() -> Path:
    """The registry's directory: $LENET_CPU_REGISTRY, else one per user in the temporary directory."""
    given = os.environ.get(REGISTRY_ENV)
    return Path(given) if given else Path(tempfile.gettempdir()) / f"lenet-{os.getuid()}" / "busy"


@contextlib.contextmanager
def registered() -> Iterator[None]:
    """This process in the registry within the block. A registry that cannot be written is no error: the
    process only goes unseen by its neighbours."""
    entry = registry() / str(os.getpid())
    try:
        entry.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not _ours(entry.parent):
            raise PermissionError(entry.parent)
        entry.write_text(str(_start_time(os.getpid())))
    except OSError:
        entry = None
    try:
        yield
    finally:
        if entry is not None:
            entry.unlink(missing_ok=True)


def busy_neighbours() -> int:
    """How many other registered lenet processes are using the CPU now (stale entries are removed)."""
    alive = []
    try:
        entries = list(registry().iterdir()) if _ours(registry()) else []
    except OSError:
        return 0
    for entry in entries:
        pid = int(entry.name) if entry.name.isdigit() else None
        if pid is None or pid == os.getpid():
            continue
        if not _same_process(entry, pid):
            entry.unlink(missing_ok=True)
            continue
        alive.append(pid)
    if not alive:
        return 0
    before, start = {pid: _cpu_ticks(pid) for pid in alive}, time.monotonic()
    time.sleep(LOOK_S)
    elapsed = time.monotonic() - start
    used = {pid: (_cpu_ticks(pid) - ticks) / TICKS / elapsed for pid, ticks in before.items()}
    return sum(share >= BUSY_SHARE for share in used.values())


def fair_threads(cores: int) -> tuple[int, int]:
    """(threads, busy neighbours): the cores shared with the busy lenet processes, one thread at least."""
    busy = busy_neighbours()
    return max(1, cores // (1 + busy)), busy


def _ours(folder: Path) -> bool:
    """Whether this user owns the registry: one made by another user in a shared /tmp could hold entries that
    make every run here take fewer threads."""
    try:
        return folder.stat().st_uid == os.getuid()
    except OSError:
        return False


def _stat_fields(pid: int) -> list[str]:
    """/proc/PID/stat's fields after the command name (which may hold spaces and parentheses)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()


def _start_time(pid: int) -> int:
    try:
        return int(_stat_fields(pid)[19])  # field 22, starttime, in clock ticks since boot
    except (OSError, ValueError, IndexError):
        return -1


def _cpu_ticks(pid: int) -> int:
    try:
        fields = _stat_fields(pid)
        return int(fields[11]) + int(fields[12])  # fields 14 and 15: user and system time
    except (OSError, ValueError, IndexError):
        return 0


def _same_process(entry: Path, pid: int) -> bool:
    try:
        return int(entry.read_text()) == _start_time(pid) != -1
    except (OSError, ValueError):
        return False
