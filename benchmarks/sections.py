"""Sections of the project's Markdown documents that code writes, between two markers.

A table in BENCHMARKS.md or RELIABILITY.md is written by the script or test that measured it
(`--write`), never copied by hand: the writer replaces the text between its markers and
nothing else, and a test can read the section back to compare it with a run.

    <!-- begin NAME: written by code, edits here are overwritten -->
    ...
    <!-- end NAME -->
"""

from __future__ import annotations

import re
from pathlib import Path

from lenet.core.files import write_text


class SectionError(ValueError):
    """The markers of a section are missing one half, repeated, or out of order."""


def markers(name: str) -> tuple[str, str]:
    return f"<!-- begin {name}: written by code, edits here are overwritten -->", f"<!-- end {name} -->"


def _span(document: str, name: str, path: Path) -> tuple[int, int] | None:
    """Where the section's text starts and ends (between the marker lines), or None without markers."""
    begin = list(re.finditer(rf"^<!-- begin {re.escape(name)}:.*-->\n", document, re.M))
    end = list(re.finditer(rf"^<!-- end {re.escape(name)} -->$", document, re.M))
    if not begin and not end:
        return None
    if len(begin) != 1 or len(end) != 1 or end[0].start() < begin[0].end():
        raise SectionError(f"{path}: section {name!r} needs one begin marker and one end marker after it")
    return begin[0].end(), end[0].start()


def read_section(path: str | Path, name: str) -> str | None:
    """The text between the section's markers; None where the document or the section is missing."""
    path = Path(path)
    if not path.exists():
        return None
    document = path.read_text()
    span = _span(document, name, path)
    return None if span is None else document[span[0] : span[1]]


def write_section(path: str | Path, name: str, text: str) -> None:
    """Put `text` between the section's markers in `path` (appended, markers and all, if absent)."""
    path = Path(path)
    document = path.read_text() if path.exists() else ""
    body = text.rstrip("\n") + "\n"
    span = _span(document, name, path)
    if span is None:
        begin, end = markers(name)
        document = (document.rstrip("\n") + "\n\n" if document else "") + f"{begin}\n{body}{end}\n"
    else:
        document = document[: span[0]] + body + document[span[1] :]
    write_text(path, document)
