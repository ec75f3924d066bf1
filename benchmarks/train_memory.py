"""Where `lenet train`'s resident memory goes: the peak of each stage, and of the whole run.

    python -m benchmarks.train_memory [lenet train's arguments, e.g. --epochs 2 --out /tmp/runs]

Runs `lenet train` in this process. Before each stage (loading the data, each epoch's training,
evaluating and saving, the final figures, the report's evaluation and figures) the kernel's peak
resident size is reset (`/proc/self/clear_refs`), so each row is that stage's own peak; a stage
inside another (the report's evaluation) also counts toward the outer one. The whole run's peak is
the largest figure read at any point, imports included: what `/usr/bin/time -v` prints as the
process's maximum resident set size. Linux only.
"""

from __future__ import annotations

import functools
import os
import platform
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Stage:
    calls: int = 0
    peak_mb: float = 0.0
    before_mb: float = 0.0  # resident at the start of its first call
    after_mb: float = 0.0  # resident at the end of its last call


STAGES: dict[str, Stage] = {}
ACTIVE: list[str] = []  # the stages under way, outermost first
WHOLE = [0.0]  # the whole run's peak


def status_mb(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/self/status has no {key}")


def fold_peak() -> None:
    """Credit the peak since the last reset to every stage under way, and to the whole run."""
    peak = status_mb("VmHWM")
    for name in ACTIVE:
        STAGES[name].peak_mb = max(STAGES[name].peak_mb, peak)
    WHOLE[0] = max(WHOLE[0], peak)


def reset_peak() -> None:
    fold_peak()
    Path("/proc/self/clear_refs").write_text("5")  # 5: reset the peak resident size to the current one


def measured(module, name: str, label: str) -> None:
    """Replace module.name by a wrapper that records its calls' peak resident size as `label`."""
    function: Callable = getattr(module, name)

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        stage = STAGES.setdefault(label, Stage())
        reset_peak()
        if not stage.calls:
            stage.before_mb = status_mb("VmRSS")
        ACTIVE.append(label)
        try:
            return function(*args, **kwargs)
        finally:
            fold_peak()
            ACTIVE.pop()
            stage.calls += 1
            stage.after_mb = status_mb("VmRSS")

    setattr(module, name, wrapper)


def main(argv: list[str]) -> int:
    import torch

    import lenet.cli

    modules = sys.modules
    imports_mb = status_mb("VmRSS")
    for module, name, label in (
        ("lenet.data.load", "load_dataset", "loading the data"),
        ("lenet.training.loop", "train_epoch", "training, per epoch"),
        ("lenet.training.loop", "evaluate_epoch", "evaluating, per epoch"),
        ("lenet.runs.directory", "save_epoch", "saving, per epoch"),
        ("lenet.training.loop", "final_figures", "final figures (every view)"),
        ("lenet.insight.report", "write_report", "the report"),
        ("lenet.insight.report", "predict_logits", "the report: its evaluation"),
        ("lenet.insight.report", "draw_figures", "the report: its figures"),
    ):
        __import__(module)
        measured(modules[module], name, label)
    code = lenet.cli.main(["train", *argv])
    fold_peak()
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    print(f"\n`python -m benchmarks.train_memory {' '.join(argv)}`: CPU {cpu}, {os.cpu_count()} logical cores; "
          f"PyTorch {torch.__version__}, Python {platform.python_version()}; resident after the imports "
          f"{imports_mb:.0f} MB\n")  # fmt: skip
    print("| stage | calls | peak MB | resident before MB | after MB |\n| --- | ---: | ---: | ---: | ---: |")
    for label, stage in STAGES.items():
        print(f"| {label} | {stage.calls} | {stage.peak_mb:.0f} | {stage.before_mb:.0f} | {stage.after_mb:.0f} |")
    print(f"| **the whole run** | | **{WHOLE[0]:.0f}** | | |")
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
