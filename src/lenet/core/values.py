"""The one check of a value against its kind and bounds: recipe fields, command-line numbers, sweep keys.

A recipe field, a flag such as --seed and a key of a sweep's SPACE file are all checked here, so
that one bad value reads the same wherever it was given: one line, naming what is wrong.
"""

from __future__ import annotations

import math
import typing
from collections.abc import Mapping
from typing import Any

from lenet.core.errors import LenetError, short_repr

# What a kind is called in a message.
KIND_WORDS = {int: "a whole number", float: "a number", str: "text", bool: "true or false", dict: "a table"}


def bounds(low: float | None = None, high: float | None = None, above: float | None = None,
           below: float | None = None, choices: tuple[str, ...] | None = None) -> dict[str, Any]:  # fmt: skip
    """Bounds for check_value: low <= x <= high, above < x < below, or one of `choices`."""
    return {"low": low, "high": high, "above": above, "below": below, "choices": choices}


def check_value(name: str, value: Any, kind: Any, limits: Mapping[str, Any] = {}) -> None:  # noqa: B006 (read only)
    """Raise a one-line LenetError unless `value` is of `kind` (int, float, bool, str, dict or a
    tuple of those) and within `limits` (see bounds()). `name` heads the message ("" for none)."""
    head = f"{name} " if name else ""
    if typing.get_origin(kind) is tuple:
        if not isinstance(value, tuple) or len(value) != len(typing.get_args(kind)):
            raise LenetError(f"{head}is a pair of numbers, not {short_repr(value)}")
        for item, item_kind in zip(value, typing.get_args(kind)):
            check_value(name, item, item_kind, limits)
        return
    if kind in (bool, str, dict):
        if type(value) is not kind and not (kind is str and isinstance(value, str)):
            raise LenetError(f"{head}must be {KIND_WORDS[kind]}, not {short_repr(value)}")
        if kind is str and limits.get("choices") and value not in limits["choices"]:
            raise LenetError(f"unknown {name} {short_repr(value)}; choose from {', '.join(limits['choices'])}")
        return
    numeric = (int,) if kind is int else (int, float)
    if isinstance(value, bool) or not isinstance(value, numeric):
        raise LenetError(f"{head}must be {KIND_WORDS[kind]}, not {short_repr(value)}")
    if not _finite(value):
        raise LenetError(f"{head}must be finite, not {short_repr(value)}")
    low, high, above, below = (limits.get(k) for k in ("low", "high", "above", "below"))
    if (low is not None and value < low) or (high is not None and value > high) \
            or (above is not None and value <= above) or (below is not None and value >= below):  # fmt: skip
        raise LenetError(f"{head}must be {describe_bounds(limits)}, not {short_repr(value)}")


def parse_value(name: str, text: str, kind: type, limits: Mapping[str, Any] = {}) -> Any:  # noqa: B006
    """A value typed on the command line, as `kind` (int, float or str), checked by check_value."""
    if kind in (int, float):
        try:
            value = kind(text)
        except ValueError:
            raise LenetError(f"{short_repr(text)} is not {KIND_WORDS[kind]}") from None
    else:
        value = text
    check_value(name, value, kind, limits)
    return value


def describe_bounds(limits: Mapping[str, Any]) -> str:
    parts = [f">= {limits['low']:g}" if limits.get("low") is not None else None,
             f"> {limits['above']:g}" if limits.get("above") is not None else None,
             f"<= {limits['high']:g}" if limits.get("high") is not None else None,
             f"< {limits['below']:g}" if limits.get("below") is not None else None]  # fmt: skip
    return " and ".join(p for p in parts if p) or "any number"


def _finite(value: int | float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float is still a whole number, and finite
        return True
