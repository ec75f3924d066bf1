"""The base of every file lenet writes and reads back: a typed schema, one reader, one writer.

A file is read in three steps, each of which ends in one RunError naming the file on failure: its
bytes are parsed (JSON, TOML), older formats are upgraded (compat.py), and the result is validated
against the file's schema. A malformed field reads as "FILE: field a.b: what was expected (got ...)".
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lenet.core.errors import RunError, short_repr
from lenet.core.files import write_json

FORMAT_VERSION = 1  # written into every JSON record; a file without it is of version 0 (before this package)

R = TypeVar("R", bound="Record")


class Record(BaseModel):
    """A file's schema: strict types (no "3" for 3), unknown keys ignored (a newer lenet may add some)."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True, protected_namespaces=(),
                              populate_by_name=True, arbitrary_types_allowed=True)

    # What the file is, for its errors and docs/run-format.md (the file name, or a description).
    FILE: ClassVar[str] = ""
    # The Chinese description of each field, for docs/zh-CN/run-format.md.
    ZH: ClassVar[dict[str, str]] = {}


class Versioned(Record):
    """A record with a format version: one from a newer lenet is refused, an older one upgraded."""

    format_version: int = Field(FORMAT_VERSION, ge=0, description="the file's format; older ones are upgraded on reading")


def validation_line(where: str, error: ValidationError) -> str:
    """A pydantic error as one line: the first problem's field, what it should be and what it is."""
    problems = error.errors(include_url=False)
    first = problems[0]
    field = ".".join(str(part) for part in first["loc"]) or "(the whole file)"
    got = "" if first["type"] == "missing" else f" (got {short_repr(first.get('input'))})"
    more = f"; and {len(problems) - 1} more" if len(problems) > 1 else ""
    return f"{where}: field {field}: {first['msg'][0].lower()}{first['msg'][1:]}{got}{more}"


def parse(record: type[R], obj: Any, where: str) -> R:
    """`obj` (parsed JSON or TOML, or a dict of tensors) as `record`, or one RunError saying why not."""
    if isinstance(obj, dict) and issubclass(record, Versioned):
        check_version(obj.get("format_version", 0), where)
    try:
        return record.model_validate(obj)
    except ValidationError as e:
        raise RunError(validation_line(where, e)) from None
    except RecursionError:
        raise RunError(f"{where}: nested too deep to be a lenet file") from None


def check_version(version: Any, where: str) -> None:
    if isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION:
        raise RunError(f"{where}: written by a newer lenet (format {short_repr(version)}; this one reads up to "
                       f"{FORMAT_VERSION}): upgrade lenet to read it")


def load_json(path: Path) -> Any:
    """The JSON value in `path`, or one RunError: missing, unreadable, not UTF-8, not JSON, nested too deep."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunError(f"{path}: missing") from None
    except IsADirectoryError:
        raise RunError(f"{path}: a directory, not a file") from None
    except OSError as e:
        raise RunError(f"{path}: unreadable ({e.strerror})") from None
    except UnicodeDecodeError:
        raise RunError(f"{path}: not UTF-8 text") from None
    except ValueError as e:
        raise RunError(f"{path}: not valid JSON ({e})") from None
    except RecursionError:
        raise RunError(f"{path}: nested too deep to be a lenet file") from None


def read_record(path: str | os.PathLike, record: type[R], upgrade=None) -> R:
    """The file at `path` as `record`, after `upgrade` (compat.py's function for this file) where given."""
    path = Path(path)
    obj = load_json(path)
    if upgrade is not None:
        obj = upgrade(obj)
    return parse(record, obj, str(path))


def from_python(record: type[R], obj: Any) -> R:
    """A record made from Python values as JSON would carry them (tuples as lists): for writers whose
    values come from dataclasses."""
    return record.model_validate_json(json.dumps(obj))


def write_record(path: str | os.PathLike, record: Record) -> None:
    """The record as JSON, atomically, with every field (defaults too), so a reader needs no defaults of its own."""
    write_json(path, record.model_dump(mode="json", by_alias=True))


def load_toml(path: str | os.PathLike, what: str) -> dict[str, Any]:
    """A TOML file lenet reads (a recipe file, a sweep's SPACE), or one LenetError saying why not."""
    import tomllib

    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise RunError(f"{what} {path}: no such file") from None
    except IsADirectoryError:
        raise RunError(f"{what} {path}: a directory, not a file") from None
    except OSError as e:
        raise RunError(f"{what} {path}: unreadable ({e.strerror})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise RunError(f"{what} {path}: not valid TOML ({e})") from None
    except RecursionError:
        raise RunError(f"{what} {path}: nested too deep") from None
