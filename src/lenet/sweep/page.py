"""sweep.html, in the report's style: the ranking, the metric against each varied field, the top curves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lenet.core.files import write_text
from lenet.sweep.plan import Plan
from lenet.runs.metrics import read_metrics

PAGE_FILE = "sweep.html"


def write_page(plan: Plan, rows: list[dict[str, Any]], metric: str, partial: str | None = None) -> Path | None:
    """Write sweep.html (None: matplotlib is missing; the table and recipe are there, the page is an extra).
    `partial`: the note that says the sweep is unfinished, shown first."""
    from lenet.insight import html_page as h

    try:
        from lenet.insight import plots
    except ImportError:
        return None
    figures = []
    ranked = [r for r in rows if "val" in r]
    for name in plan.varied:
        points = [(r["params"][name], s["val"]) for r in ranked for s in r["seeds"] if "val" in s]
        if points:
            figures.append(h.png_figure(plots.png_bytes(plots.metric_against(name, points, metric)),
                                        f"{metric} against {name}", "each dot one seed's run"))  # fmt: skip
    top = {}
    for r in ranked[:5]:
        run_dir = Path(plan.directory) / r["seeds"][0]["run"]
        top[f"{r['trial']} seed {r['seeds'][0]['seed']}"] = read_metrics(run_dir)
    if top:
        figures.append(h.png_figure(plots.png_bytes(plots.compare_curves(top, "the top configurations")),
                                    "learning curves of the top configurations"))  # fmt: skip
    headers = ["rank", "trial", *plan.varied, "seeds finished", "val mean", "val std", "val min", "test mean", "status"]
    body = [[i, r["trial"], *(r["params"].get(f) for f in plan.varied), r["finished"],
             *((h.Number(f"{r['val'][k]:.2%}") for k in ("mean", "std", "min")) if "val" in r else ("-",) * 3),
             h.Number(f"{r['test']['mean']:.2%}") if "test" in r else "-", status(r)] for i, r in enumerate(rows, 1)]  # fmt: skip
    ranking = h.paragraph(f"Ranked by {metric} on {plan.space['val_split']:,} held-out training images of "
                          f"{plan.data_note()} (mean over seeds). The test figures decided nothing; they are for "
                          "the record.")  # fmt: skip
    html = h.page(
        f"lenet sweep {plan.name}" + (" (partial)" if partial else ""),
        [
            *([h.section("Partial", h.paragraph(partial))] if partial else []),
            h.section("Ranking", ranking, h.frame("the ranking", h.table(headers, body))),
            h.section("What mattered", *figures),
            h.section("Base recipe", h.key_value_table(plan.space["base"])),
        ],
        f"{len(plan.configurations)} configurations x {len(plan.seeds)} seeds",
    )
    path = Path(plan.directory) / PAGE_FILE
    write_text(path, html)
    return path


def status(row: dict[str, Any]) -> str:
    """A row's seeds counted by status ("1 done, 1 stopped early"), with the first failure's message."""
    counts: dict[str, int] = {}
    for s in row["seeds"]:
        counts[s["status"]] = counts.get(s["status"], 0) + 1
    text = ", ".join(f"{n} {status}" for status, n in counts.items())
    failed = [s["message"] for s in row["seeds"] if s["status"] == "failed"]
    return text + (f": {failed[0]}" if failed else "")
