"""Numbers and words as lenet writes them for people: in tables, messages and the JSON records it prints."""

from __future__ import annotations

from typing import Any

# Significant digits of a float in a table or a JSON record: float32's precision (about 7.2 digits),
# so 0.7 + 0.1 reads 0.8, not 0.7999999999999999, and a float32 0.892 not 0.8920000195503235.
FLOAT_DIGITS = 7


def plural(n: int, word: str, words: str | None = None, count: bool = True) -> str:
    """'1 seed', '2 seeds' ('words' where the plural is not word + s); 'seed', 'seeds' without the `count`."""
    chosen = word if n == 1 else (words or word + "s")
    return f"{n} {chosen}" if count else chosen


def clip(text: str, limit: int = 300) -> str:
    """`text` fit for a one-line message, whatever it holds (a file name, a value from a file, another
    library's error): its first line, at most `limit` characters, ending "..." where cut."""
    line = (text.splitlines() or [""])[0]
    return line if len(line) <= limit else line[: limit - 3] + "..."


def rounded(value: Any, digits: int = FLOAT_DIGITS) -> Any:
    """`value` with every float in it (in dicts, lists and tuples too) rounded to `digits` significant digits."""
    if isinstance(value, float):
        return float(f"{value:.{digits}g}") if value == value and abs(value) != float("inf") else value
    if isinstance(value, dict):
        return {key: rounded(item, digits) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(rounded(item, digits) for item in value)
    return value
