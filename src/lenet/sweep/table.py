"""A sweep's results: the ranked table (sweep.csv, sweep.json, the terminal) and best_recipe.toml.

Ranked by the validation metric's mean over a configuration's finished seeds; the test figures are
for the record only. The table of an interrupted sweep says it is partial, in every form, and no
best recipe is written from it (an earlier session's is removed).
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lenet.core.errors import LenetError
from lenet.core.files import write_json, write_text
from lenet.sweep.page import status, write_page
from lenet.runs import directory as runs
from lenet.runs.metrics import METRICS_FILE
from lenet.runs.sweeps import FAILED_FILE, read_failed
from lenet.sweep.plan import Plan, run_metric, threads, trial_records
from lenet.sweep.space import METRICS
from lenet.training.recipes import recipe_toml

TABLE_CSV, TABLE_JSON, BEST_RECIPE = "sweep.csv", "sweep.json", "best_recipe.toml"


@dataclass
class SweepResult:
    directory: Path
    rows: list[dict[str, Any]]
    best_recipe: Path | None
    page: Path | None
    seconds: float
    partial: bool = False


def partial_note(plan: Plan) -> str:
    return f"PARTIAL: the sweep was interrupted; lenet sweep --resume {plan.directory} finishes it"


def table_rows(plan: Plan, partial: bool = False) -> list[dict[str, Any]]:
    """One row per configuration, best first by the mean validation metric over its finished seeds."""
    from lenet.training.metrics import seed_statistics

    ended = _how_seeds_ended(plan)
    rows = []
    for c, values in enumerate(plan.configurations):
        seeds = [_seed_entry(plan, c, seed, _unrun_status(plan, ended.get((c, seed)), partial)) for seed in plan.seeds]
        finished = [s for s in seeds if "val" in s]
        row = {"trial": f"trial-{c:04d}", "params": values or {}, "seeds": seeds, "finished": len(finished)}
        if finished:
            row["val"] = seed_statistics([s["val"] for s in finished])
            row["test"] = seed_statistics([s["test"] for s in finished])
        rows.append(row)
    # Complete configurations first (a partial one's mean is not comparable), then by the mean.
    rows.sort(key=lambda r: (r["finished"] < len(plan.seeds), -r["val"]["mean"] if "val" in r else math.inf, r["trial"]))
    return rows


def _how_seeds_ended(plan: Plan) -> dict[tuple[int, int], str]:
    """(configuration, seed) to how its Tune trial ended, per trials.json: finished, stopped early, error."""
    units = plan.units()
    return {(units[u].configuration, seed): how for u, how in trial_records(plan).items() for seed in units[u].seeds}


def _unrun_status(plan: Plan, how: str | None, partial: bool) -> str | None:
    """The status of a seed with no summary and no failure: its trial's error (--resume tries it again), a
    stop by ASHA, or None (unfinished, not run). A seed never trained in an ASHA sweep that ran to its end
    was stopped by ASHA (trials.json says so since it exists; before it, only the end of the sweep did); in
    a partial table, it may yet run."""
    if how == "error":
        return "error"
    if how == "stopped early" or (bool(plan.space["asha"]) and not partial):
        return "stopped early"
    return None


def _seed_entry(plan: Plan, c: int, seed: int, ended_as: str | None) -> dict[str, Any]:
    run_dir = plan.run_dir(c, seed)
    entry: dict[str, Any] = {"seed": seed, "run": str(run_dir.relative_to(plan.directory))}
    if runs.is_finished(run_dir):
        summary = runs.read_summary(run_dir)
        entry.update(status="stuck" if summary.stuck else "done", val=run_metric(run_dir, plan.space["metric"]),
                     test=summary.test.accuracy)  # fmt: skip
    elif (run_dir / FAILED_FILE).exists():
        entry.update(status="failed", message=read_failed(run_dir).error)
    elif ended_as is not None:
        entry.update(status=ended_as)
    else:
        entry.update(status="unfinished" if (run_dir / METRICS_FILE).exists() else "not run")
    return entry


def finish(plan: Plan, seconds: float, on_line=print, partial: bool = False) -> SweepResult:
    """Write the table (csv, json), the page and, for a whole sweep, the best recipe file; print the table."""
    directory = Path(plan.directory)
    rows = table_rows(plan, partial)
    metric = f"validation accuracy {METRICS[plan.space['metric']]}"
    table = {"sweep": plan.name, "partial": partial, "metric": metric, "dataset": plan.dataset,
             "train_subset": plan.space["train_subset"], "test_subset": plan.space["test_subset"],
             "val_split": plan.space["val_split"], "varied": plan.varied, "seeds": plan.seeds, "rows": rows}  # fmt: skip
    write_json(directory / TABLE_JSON, table)
    write_text(directory / TABLE_CSV, _csv(plan, rows, partial))
    best = None
    if not partial and rows and rows[0]["finished"] == len(plan.seeds):
        best = directory / BEST_RECIPE
        write_text(best, _best_recipe(plan, rows[0], metric))
    else:  # an earlier session's, beside a table it no longer ranks first (say a resume cut short)
        (directory / BEST_RECIPE).unlink(missing_ok=True)
    for line in table_text(plan, rows, partial):
        on_line(line)
    page = write_page(plan, rows, metric, partial_note(plan) if partial else None)
    on_line(f"{'partial ' if partial else ''}table written to {directory / TABLE_CSV} and {directory / TABLE_JSON}")
    if best is not None:
        on_line(f"best recipe written to {best}")
    else:
        on_line(f"no best recipe: {'the sweep is unfinished' if partial else 'no configuration finished all its seeds'}")
    if page is not None:
        on_line(f"page written to {page}")
    if not partial:
        check_not_all_failed(plan, rows)
    return SweepResult(directory, rows, best, page, seconds, partial)


def check_not_all_failed(plan: Plan, rows: list[dict[str, Any]]) -> None:
    """A sweep every run of which failed (or whose Tune trial errored) is a failed command (exit 1), its table
    written first: the first failure's message, and how to try again (--resume trains failed runs anew)."""
    seeds = [seed for row in rows for seed in row["seeds"]]
    failed = [(row["trial"], seed) for row in rows for seed in row["seeds"] if seed["status"] in ("failed", "error")]
    if not failed or len(failed) < len(seeds):
        return
    trial, first = failed[0]
    why = first.get("message") or "its Tune trial errored (see the sweep's tune/ directory)"
    more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
    raise LenetError(f"every trial failed: {trial} seed {first['seed']}: {why}{more}; fix the cause, then "
                     f"lenet sweep --resume {plan.directory} trains them again")  # fmt: skip


def _best_recipe(plan: Plan, top: dict[str, Any], metric: str) -> str:
    subset = plan.space["train_subset"] or plan.space["test_subset"]
    comments = [
        f"the best configuration of sweep {plan.name} ({top['trial']}): {metric} {top['val']['mean']:.2%} mean",
        f"over seeds {', '.join(map(str, plan.seeds))} on a validation split of {plan.space['val_split']} images",
        f"of {plan.data_note()}",
        f"train it: lenet train --recipe {BEST_RECIPE} --dataset {plan.dataset} --seed {plan.seeds[0]} "
        f"--val-split {plan.space['val_split']} --threads {threads(plan)}",
        # lenet train has no subset flags: on a subset the figures above are the subset's, not a promise
        *(["(on all its images: the sweep's runs used only the subset above)"] if subset else []),
    ]  # fmt: skip
    return recipe_toml(plan.recipe(int(top["trial"].split("-")[1])), comments)


def _csv(plan: Plan, rows: list[dict[str, Any]], partial: bool) -> str:
    buffer = io.StringIO()
    if partial:  # a comment line: csv readers that take comments (pandas: comment="#") skip it
        buffer.write(f"# {partial_note(plan)}\n")
    writer = csv.writer(buffer)
    writer.writerow(["rank", "trial", *plan.varied, "seeds_finished", "val_mean", "val_std", "val_min",
                     "test_mean", "test_std", "test_min", "status"])  # fmt: skip
    for rank, row in enumerate(rows, 1):
        stats = [row[split][k] if split in row else "" for split in ("val", "test") for k in ("mean", "std", "min")]
        writer.writerow([rank, row["trial"], *(row["params"].get(f) for f in plan.varied), row["finished"], *stats,
                         status(row)])  # fmt: skip
    return buffer.getvalue()


def table_text(plan: Plan, rows: list[dict[str, Any]], partial: bool = False) -> list[str]:
    head = f"{'rank':>4}  {'trial':<10}  " + "  ".join(f"{f:>12}" for f in plan.varied)
    head += f"  {'val mean':>8}  {'val std':>7}  {'val min':>7}  {'test mean':>9}  status"
    lines = [partial_note(plan)] if partial else []
    lines += [f"ranked by validation accuracy {METRICS[plan.space['metric']]} (mean over seeds) on {plan.data_note()}; "
              "test figures are for the record only", head]  # fmt: skip
    for rank, row in enumerate(rows, 1):
        params = "  ".join(f"{_value(row['params'].get(f)):>12}" for f in plan.varied)
        if "val" in row:
            figures = f"{row['val']['mean']:>8.2%}  {row['val']['std']:>7.2%}  {row['val']['min']:>7.2%}  {row['test']['mean']:>9.2%}"
        else:
            figures = f"{'-':>8}  {'-':>7}  {'-':>7}  {'-':>9}"
        lines.append(f"{rank:>4}  {row['trial']:<10}  {params}  {figures}  {status(row)}")
    return lines


def _value(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
