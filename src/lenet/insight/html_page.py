"""Self-contained HTML pages: every image inline as a base64 data URI, no scripts, no network.

The Content-Security-Policy makes that a promise the browser keeps: anything that tried to
load from elsewhere would be blocked (and show up as a console error), not fetched.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping, Sequence
from html import escape
from typing import Any

# The font stack: Latin system fonts, then each system's CJK fonts, then whatever the system gives for
# Chinese (a class or a run named in Chinese never renders as boxes where a CJK font is installed).
# A table sits in a frame that scrolls sideways by itself, so that a narrow screen (390 px) keeps the
# page at its width and the text at its size, instead of zooming the whole page out to fit the table.
_STYLE = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", "Noto Sans CJK SC", "Source Han Sans SC", "PingFang SC",
       "Hiragino Sans GB", "Microsoft YaHei", "WenQuanYi Micro Hei", sans-serif; margin: 2rem auto; max-width: 1200px;
       padding: 0 1rem; color: #1d1d1f; }
h1 { font-size: 1.6rem; overflow-wrap: anywhere; } h2 { font-size: 1.2rem; margin-top: 2.2rem; border-bottom: 1px solid #ddd; }
.note { overflow-wrap: anywhere; }
.table-frame { max-width: 100%; overflow-x: auto; margin: 0.5rem 0; }
table { border-collapse: collapse; }
th, td { border: 1px solid #ddd; padding: 0.25rem 0.6rem; text-align: left; }
@media (max-width: 600px) {
  body { margin: 1rem auto; padding: 0 0.6rem; }
  th, td { padding: 0.2rem 0.4rem; }
  th { white-space: normal; }
}
td.num { text-align: right; font-variant-numeric: tabular-nums; }
th { background: #f4f4f6; }
img { max-width: 100%; height: auto; display: block; }
figcaption, .note { color: #555; font-size: 0.9rem; }
.frame { overflow-x: auto; max-width: 100%; }
"""
_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def page(title: str, sections: Iterable[str], subtitle: str = "") -> str:
    body = "\n".join(sections)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{_CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>{escape(title)}</title>
<style>{_STYLE}</style>
</head>
<body>
<h1>{escape(title)}</h1>
{f'<p class="note">{escape(subtitle)}</p>' if subtitle else ""}
{body}
</body>
</html>
"""


def section(heading: str, *parts: str) -> str:
    return f'<section id="{anchor(heading)}">\n<h2>{escape(heading)}</h2>\n' + "\n".join(parts) + "\n</section>"


def anchor(heading: str) -> str:
    """The id of a heading's section: "Feature maps: block 1" -> "feature-maps-block-1"."""
    return "-".join("".join(c if c.isalnum() else " " for c in heading.lower()).split())


def contents(headings: Sequence[str]) -> str:
    """A table of contents linking to each section (a long page is read by jumping)."""
    items = "\n".join(f'<li><a href="#{anchor(h)}">{escape(h)}</a></li>' for h in headings)
    return f'<nav aria-label="contents">\n<h2>Contents</h2>\n<ol>\n{items}\n</ol>\n</nav>'


class Number(str):
    """A number already formatted as text (0.79 as "79.07%"): a table right-aligns it like a number."""


def paragraph(text: str) -> str:
    """A note under a heading (the sweep page's)."""
    return f'<p class="note">{escape(text)}</p>'


def table(headers: Sequence[str], rows: Iterable[Iterable[Any]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "\n".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in rows)
    table = f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>"
    # tabindex: a frame that scrolls can be scrolled from the keyboard too
    label = escape(f"table of {', '.join(headers[:3])}")
    return f'<div class="table-frame" tabindex="0" role="region" aria-label="{label}">\n{table}\n</div>'


def frame(label: str, html: str) -> str:
    """`html` (a wide table) in a frame that scrolls sideways on a narrow screen, not the whole page;
    focusable, so a keyboard scrolls it too."""
    return f'<div class="frame" role="region" aria-label="{escape(label)}" tabindex="0">\n{html}\n</div>'


def key_value_table(items: Mapping[str, Any], headers: Sequence[str] = ("setting", "value")) -> str:
    # All text, left-aligned: a column mixing numbers and words reads badly split both ways.
    return table(headers, ((key, _text(value)) for key, value in items.items()))


def _cell(value: Any) -> str:
    if isinstance(value, Number):
        return f'<td class="num">{escape(value)}</td>'
    if isinstance(value, bool) or value is None:
        return f"<td>{escape(json.dumps(value))}</td>"
    if isinstance(value, int):
        return f'<td class="num">{value:,}</td>'
    if isinstance(value, float):
        return f'<td class="num">{value:.6g}</td>'
    return f"<td>{escape(_text(value))}</td>"


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def png_figure(png: bytes, alt: str, caption: str = "") -> str:
    src = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    cap = f"<figcaption>{escape(caption)}</figcaption>" if caption else ""
    return f'<figure>\n<img src="{src}" alt="{escape(alt)}">\n{cap}\n</figure>'


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"recipe": {"lr": 0.01}} -> {"recipe.lr": 0.01}, so nested configs fit in one table."""
    flat: dict[str, Any] = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat
