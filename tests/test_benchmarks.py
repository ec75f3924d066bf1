"""The benchmark scripts run, and --write puts their tables into BENCHMARKS.md's sections (on a tiny configuration)."""

import re
import shutil
import subprocess
import sys

from benchmarks.sections import read_section
from conftest import REPO, write_csv

SECTIONS = {"BENCHMARKS.md": ("train-speed", "time-to-accuracy", "serving"), "RELIABILITY.md": ("fuzz-table",)}


def test_the_documents_have_their_generated_sections():
    for document, names in SECTIONS.items():
        for name in names:
            assert read_section(REPO / document, name), f"{document} has no {name} section"


def test_train_speed_writes_its_two_tables_and_nothing_else(tmp_path):
    doc = shutil.copy(REPO / "BENCHMARKS.md", tmp_path / "BENCHMARKS.md")
    before = doc.read_text()
    command = [sys.executable, "-m", "benchmarks.train_speed", "--subset", "1200", "--epochs", "1", "--workers", "0",
               "--threads", "1", "--tta-recipes", "seed,default", "--tta-epochs", "2", "--write", str(doc)]  # fmt: skip
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    speed, tta = read_section(doc, "train-speed"), read_section(doc, "time-to-accuracy")
    for section in (speed, tta):
        assert "--subset 1200" in section and "not a measurement" in section and "PyTorch" in section
    rows = [line for line in speed.splitlines() if line.startswith("| ") and not line.startswith("| pipeline")]
    pipelines = ["tutorial pipeline (`benchmarks/reference.py`: PIL image + `ToTensor` per sample, `DataLoader`, "
                 "0 workers)", "lenet, plain step (`--no-channels-last --no-fused --no-pool-first`)",
                 "lenet engine, default (channels-last, fused Adam, pool first)", "lenet engine, `--precision bf16`"]  # fmt: skip
    assert [r.split(" | ")[0].removeprefix("| ") for r in rows[1:]] == pipelines
    assert all(re.fullmatch(r"\| .+ \| [\d.]+ \| [\d,]+ \| [\d.]+x \| [\d.]+% \| \d+ MB \|", r) for r in rows[1:]), rows
    for label in (r"tutorial pipeline \(`benchmarks/reference.py`, its recipe, 2 epochs\)", "lenet `seed`", "lenet `default`"):
        row = rf"^\| {label} \| (not reached|[\d.]+ s) \| (not reached|[\d.]+ s) \| (not reached|[\d.]+ s) \| [\d.]+% after [\d.]+ s \| 2 \|"
        assert re.search(row, tta, re.M), (label, tta)
    # Everything outside the two sections is as it was: the notes, the serving section.
    outside = lambda text: re.sub(r"<!-- begin (train-speed|time-to-accuracy):.*?<!-- end \1 -->", "", text, flags=re.S)  # noqa: E731
    assert outside(doc.read_text()) == outside(before)


def test_profile_step_times_and_profiles_a_step():
    command = [sys.executable, "-m", "benchmarks.profile_step", "--steps", "5", "--subset", "640", "--profile"]
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"recipe seed, model lenet, batch 64, 1 thread\(s\), .*: [\d.]+ ms per step", proc.stdout), proc.stdout
    shares = [float(m) for m in re.findall(r"^ +([\d.]+)%  aten::", proc.stdout, re.M)]
    assert shares and sum(shares) <= 100.5 and any("convolution" in line for line in proc.stdout.splitlines())


def test_train_memory_gives_each_stage_of_a_run_its_own_peak(tmp_path):
    write_csv(tmp_path / "train.csv", 300)
    write_csv(tmp_path / "test.csv", 100, seed=1)
    command = [sys.executable, "-m", "benchmarks.train_memory", "--dataset", f"csv:{tmp_path}", "--epochs", "2",
               "--out", str(tmp_path / "runs"), "--no-progress"]  # fmt: skip
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    rows = {m[0].strip(): (int(m[1]), int(m[2]), int(m[3])) for m in
            re.findall(r"^\| ([^|*]+) \| (\d+) \| (\d+) \| (\d+) \| \d+ \|$", proc.stdout, re.M)}  # fmt: skip
    calls = {"loading the data": 1, "training, per epoch": 2, "judging, per epoch": 2, "saving, per epoch": 2,
             "final figures (every view)": 1, "the report": 1, "the report: its evaluation": 1,
             "the report: its figures": 1}  # fmt: skip
    assert {name: row[0] for name, row in rows.items()} == calls, proc.stdout
    whole = int(re.search(r"^\| \*\*the whole run\*\* \| \| \*\*(\d+)\*\* \|", proc.stdout, re.M)[1])
    assert all(before <= peak <= whole for _, peak, before in rows.values()), proc.stdout
    # The report's evaluation and figures happen inside it: its peak is at least theirs.
    assert rows["the report"][1] >= max(rows["the report: its evaluation"][1], rows["the report: its figures"][1])
