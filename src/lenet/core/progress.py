"""Progress on a terminal, nothing when piped: a line per stage and a bar over batches.

Evaluation, export and the report work for tens of seconds; on a terminal the user sees which
stage runs and how far it is. Logs, pipes and CI see none of it: both the lines and tqdm's bars
(`disable=None`) test whether stderr is a terminal.
"""

import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")


def on_terminal() -> bool:
    return sys.stderr.isatty()


@contextmanager
def stage(description: str, enabled: bool = True) -> Iterator[None]:
    """'description ...' when the stage begins and its seconds when it ends, on stderr of a terminal."""
    show = enabled and on_terminal()
    if show:
        print(f"{description} ...", file=sys.stderr, flush=True)
    start = time.perf_counter()
    yield
    if show:
        print(f"{description}: done in {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)


def bar(items: Iterable[T], total: int, description: str, enabled: bool = True, unit: str = "batch") -> Iterable[T]:
    """`items` with a bar that disappears when done (tqdm, where installed)."""
    if not enabled:
        return items
    try:
        from tqdm import tqdm
    except ImportError:
        return items
    return tqdm(items, total=total, desc=description, unit=unit, leave=False, disable=None)
