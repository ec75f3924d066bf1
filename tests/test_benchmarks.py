"""The benchmark scripts run, and --write puts their tables into BENCHMARKS.md's sections (on a tiny configuration)."""

import os
import re
import shutil
import subprocess
import sys

import pytest
import torch
from benchmarks.sections import read_section
from namespaces import in_loopback_namespace

from conftest import REPO, write_csv

SECTIONS = {"BENCHMARKS.md": ("train-speed", "time-to-accuracy", "gpu-train-speed", "gpu-time-to-accuracy", "serving",
                              "sweep-overhead", "thread-policy", "search-compare", "whole-process", "anchors-study",
                              "anchors-study-2", "anchors-study-3", "fast-study"),
            "RELIABILITY.md": ("fuzz-table",)}


def test_the_documents_have_their_generated_sections():
    for document, names in SECTIONS.items():
        for name in names:
            assert read_section(REPO / document, name), f"{document} has no {name} section"


def test_train_speed_writes_its_two_tables_and_nothing_else(tmp_path):
    doc = shutil.copy(REPO / "BENCHMARKS.md", tmp_path / "BENCHMARKS.md")
    before = doc.read_text()
    command = [sys.executable, "-m", "benchmarks.train_speed", "--subset", "1200", "--epochs", "1", "--workers", "0",
               "--threads", "1", "--tta-recipes", "seed,default", "--tta-epochs", "2", "--write", str(doc),
               "--tutorial-python", ""]  # fmt: skip
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    speed, tta = read_section(doc, "train-speed"), read_section(doc, "time-to-accuracy")
    for section in (speed, tta):
        assert "--subset 1200" in section and "not a measurement" in section and "PyTorch" in section
        assert "The reference is benchmarks/reference.py, the torchvision-free copy" in section
    rows = [line for line in speed.splitlines() if line.startswith("| ") and not line.startswith("| pipeline")]
    pipelines = ["tutorial pipeline (`benchmarks/reference.py`, PIL image + `ToTensor` per sample, `DataLoader`, "
                 "0 workers)", "lenet, plain step (`--no-channels-last --no-fused --no-pool-first --no-keep-memory`)",
                 "lenet engine, default (channels-last, fused Adam, pool first, freed memory kept)",
                 "lenet engine, `--precision bf16`"]  # fmt: skip
    assert [r.split(" | ")[0].removeprefix("| ") for r in rows[1:]] == pipelines
    assert all(re.fullmatch(r"\| .+ \| [\d.]+ \| [\d,]+ \| [\d.]+x \| [\d.]+% \| \d+ MB \|", r) for r in rows[1:]), rows
    check_speed_columns(speed, rows[1:])
    for label in (r"tutorial pipeline \(`benchmarks/reference.py`, its recipe, 2 epochs\)", "lenet `seed`", "lenet `default`"):
        row = rf"^\| {label} \| (not reached|[\d.]+ s) \| (not reached|[\d.]+ s) \| (not reached|[\d.]+ s) \| [\d.]+% after [\d.]+ s \| 2 \|"
        assert re.search(row, tta, re.M), (label, tta)
    # Everything outside the two sections is as it was: the notes, the serving section.
    outside = lambda text: re.sub(r"<!-- begin (train-speed|time-to-accuracy):.*?<!-- end \1 -->", "", text, flags=re.S)  # noqa: E731
    assert outside(doc.read_text()) == outside(before)


def test_serve_load_loads_each_server_in_turn_and_writes_the_serving_section(tmp_path, small_run):
    doc = shutil.copy(REPO / "BENCHMARKS.md", tmp_path / "BENCHMARKS.md")
    before = doc.read_text()
    servers = ["--runtime torch", "--runtime torch --max-batch 1"]
    command = [sys.executable, "-m", "benchmarks.serve_load", str(small_run), "--requests", "30", "--concurrency", "2",
               "--rounds", "2", "--servers", *servers, "--write", str(doc)]  # fmt: skip
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    section = read_section(doc, "serving")
    rows = [line for line in section.splitlines() if line.startswith("| `--")]
    # Two rounds, each server in turn; every row its own 30 requests, none failed.
    assert [r.split(" | ")[0] for r in rows] == [f"| `{s}`" for s in servers * 2]
    assert all(re.search(r"\| 2 \| 30 \| 0 \| [\d.]+ \| [\d.]+ \|", r) for r in rows), rows
    for row in rows:  # percentiles in order: p50 <= p99 <= max
        p50, p99, top = (float(cell) for cell in row.split(" | ")[4:7])
        assert p50 <= p99 <= top, row
    assert "2 round(s)" in section and "uvicorn" in section
    # --max-batch 1 gave one image per pass: 200 warm-up and 60 measured requests, one pass each.
    assert "`--runtime torch --max-batch 1`: 260 images in 260 forward passes" in section
    # Each server's runtime as its GET /model names it (an int8 server adds its and fp32's test accuracy).
    assert re.search(r"Runtimes \(`GET /model`\): `--runtime torch`: torch [\w.+]+; `--runtime torch --max-batch 1`: "
                     r"torch [\w.+]+\.", section), section  # fmt: skip
    outside = lambda text: re.sub(r"<!-- begin serving:.*?<!-- end serving -->", "", text, flags=re.S)  # noqa: E731
    assert outside(doc.read_text()) == outside(before)


def within(value: float, low: float, high: float) -> bool:
    return low - 1e-9 <= value <= high + 1e-9


def check_speed_columns(section: str, rows: list[str]) -> None:
    """Each row's images/s is the header's image count over its s/epoch, and its speed-up the reference's
    s/epoch over its own (the first row is the reference), allowing for the rounding of the cells."""
    images = int(re.search(r"Seconds per epoch of ([\d,]+) training images", section)[1].replace(",", ""))
    cells = [row.split(" | ") for row in rows]
    seconds = [float(c[1]) for c in cells]
    half = 0.005  # s/epoch is printed with two decimals
    for c, s in zip(cells, seconds):
        per_s, speedup = float(c[2].replace(",", "")), float(c[3].rstrip("x"))
        fastest = images / (s - half) if s > half else float("inf")
        assert within(per_s, images / (s + half) - 0.5, fastest + 0.5), (c, images)
        slowest = (seconds[0] - half) / (s + half)
        quickest = (seconds[0] + half) / (s - half) if s > half else float("inf")
        assert within(speedup, slowest - 0.05, quickest + 0.05), (c, seconds[0])


def test_serve_load_puts_a_decompression_heavy_client_beside_the_same_load(tmp_path, small_run):
    doc = shutil.copy(REPO / "BENCHMARKS.md", tmp_path / "BENCHMARKS.md")
    command = [sys.executable, "-m", "benchmarks.serve_load", str(small_run), "--requests", "40", "--concurrency", "2",
               "--servers", "--runtime torch", "--heavy-clients", "1", "--heavy-side", "2000", "--write", str(doc)]  # fmt: skip
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    section = read_section(doc, "serving")
    rows = [line.split(" | ") for line in section.splitlines() if line.startswith("| `--")]
    assert len(rows) == 2 and rows[0][:3] == rows[1][:3] == ["| `--runtime torch`", "2", "40"]  # the same load, twice
    assert rows[0][-2:] == ["0", "- |"] and rows[1][-2] == "1"  # alone, then beside one heavy client
    answers = re.fullmatch(r"200: (\d+); ([\d.]+) s \|", rows[1][-1])
    assert answers and int(answers.group(1)) >= 1, rows[1]  # within the budget: decoded and answered
    assert "2000x2000 PNG" in section and "4,000,000 pixels" in section


# A stand-in for torchvision (which does not install beside this PyTorch build), reading the raw
# folder the way torchvision's FashionMNIST does: what tutorial.py imports, and nothing more.
FAKE_TORCHVISION = {
    "__init__.py": "from . import datasets, transforms\n__version__ = '0.0+stand-in'\n",
    "transforms.py": """
import numpy as np
import torch

class ToTensor:
    def __call__(self, pic):
        return torch.from_numpy(np.array(pic, np.uint8)).float().div(255)[None]
""",
    "datasets.py": """
import os
import numpy as np
import torch
from PIL import Image

def read(path):
    raw = open(path, "rb").read()
    assert raw[:3] == bytes([0, 0, 8]), path
    shape = np.frombuffer(raw[4 : 4 + 4 * raw[3]], ">u4")
    return np.frombuffer(raw[4 + 4 * raw[3] :], np.uint8).reshape(shape)

class FashionMNIST(torch.utils.data.Dataset):
    def __init__(self, root, train=True, download=False, transform=None):
        raw, prefix = os.path.join(root, "FashionMNIST", "raw"), "train" if train else "t10k"
        self.data, self.targets = read(f"{raw}/{prefix}-images-idx3-ubyte"), read(f"{raw}/{prefix}-labels-idx1-ubyte")
        assert len(self.data) == len(self.targets) and not download
        self.transform = transform

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, index):
        return self.transform(Image.fromarray(self.data[index], mode="L")), int(self.targets[index])
""",
}


def test_train_speed_runs_the_tutorials_own_code_where_torchvision_imports(tmp_path):
    """With an interpreter that imports torchvision, the reference is benchmarks/tutorial.py on the IDX files
    train_speed writes, and both tables say so (here a stand-in torchvision; CI cannot install the real one)."""
    (tmp_path / "torchvision").mkdir()
    for name, text in FAKE_TORCHVISION.items():
        (tmp_path / "torchvision" / name).write_text(text)
    doc = shutil.copy(REPO / "BENCHMARKS.md", tmp_path / "BENCHMARKS.md")
    command = [sys.executable, "-m", "benchmarks.train_speed", "--subset", "1200", "--epochs", "2", "--workers", "0",
               "--threads", "1", "--tta-recipes", "seed", "--tta-epochs", "1", "--write", str(doc),
               "--tutorial-python", sys.executable]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    speed, tta = read_section(doc, "train-speed"), read_section(doc, "time-to-accuracy")
    for section in (speed, tta):
        assert "The reference is the tutorial's own code (benchmarks/tutorial.py" in section
        assert "torchvision 0.0+stand-in" in section
    own = "| tutorial's own code (`benchmarks/tutorial.py`, torch "
    speed_row = next(line for line in speed.splitlines() if line.startswith(own))
    assert re.search(r"PIL image \+ `ToTensor` per sample, `DataLoader`, 0 workers\) \| [\d.]+ \| [\d,]+ \| 1.0x \| [\d.]+% \|", speed_row)
    check_speed_columns(speed, [line for line in speed.splitlines() if line.startswith("| ") and " | " in line
                                and re.search(r" \| [\d.]+x \| ", line)])  # fmt: skip
    assert re.search(r"its recipe, 1 epochs\) \|( (not reached|[\d.]+ s) \|){3} [\d.]+% after [\d.]+ s \| 1 \|", tta), tta


def test_the_tutorial_root_holds_the_data_as_idx_files(tmp_path, fmnist):
    from benchmarks.train_speed import write_tutorial_root

    from lenet.data.idx import read_idx

    data = fmnist.subset(300, 100)
    raw = write_tutorial_root(data, tmp_path) / "FashionMNIST" / "raw"
    assert sorted(p.name for p in raw.iterdir()) == ["t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte",
                                                     "train-images-idx3-ubyte", "train-labels-idx1-ubyte"]  # fmt: skip
    assert torch.equal(read_idx(raw / "train-images-idx3-ubyte"), data.train_images[:, 0])
    assert torch.equal(read_idx(raw / "t10k-labels-idx1-ubyte"), data.test_labels.to(torch.uint8))


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
    calls = {"loading the data": 1, "training, per epoch": 2, "evaluating, per epoch": 2, "saving, per epoch": 2,
             "final figures (every view)": 1, "the report": 1, "the report: its evaluation": 1,
             "the report: its figures": 1}  # fmt: skip
    assert {name: row[0] for name, row in rows.items()} == calls, proc.stdout
    whole = int(re.search(r"^\| \*\*the whole run\*\* \| \| \*\*(\d+)\*\* \|", proc.stdout, re.M)[1])
    assert all(before <= peak <= whole for _, peak, before in rows.values()), proc.stdout
    # The report's evaluation and figures happen inside it: its peak is at least theirs.
    assert rows["the report"][1] >= max(rows["the report: its evaluation"][1], rows["the report: its figures"][1])


@pytest.mark.usefixtures("ray_namespace")
def test_search_compare_runs_both_searches_on_the_same_budget_and_writes_its_section(tmp_path):
    doc = shutil.copy(REPO / "BENCHMARKS.md", tmp_path / "BENCHMARKS.md")
    # 900 images: of 800 (640 trained on), batch 128 is 5 steps, whose 20% warm-up is one step, which a sweep
    # now refuses before Ray starts, as lenet train does.
    command = [*in_loopback_namespace([sys.executable, "-m", "benchmarks.search_compare", "--trials", "2",
               "--search-seeds", "1", "--subset", "900", "--epochs", "1", "--write", str(doc)])]  # fmt: skip
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr
    section = read_section(doc, "search-compare")
    rows = [line for line in section.splitlines() if line.startswith("| random") or line.startswith("| optuna")]
    assert [r.split(" | ")[0] for r in rows] == ["| random", "| optuna"]
    best = [float(r.split(" | ")[2].strip("*%")) for r in rows]
    ratio = float(re.search(r"best accuracy \*\*([\d.]+)x", section)[1])
    assert abs(ratio - best[1] / best[0]) < 2e-3, (ratio, best)


def test_whole_process_needs_torchvision_and_reads_both_processes_accuracy():
    """Without an interpreter that imports torchvision it stops at once with one line (exit 2), before any
    run; the tutorial's JSON line and lenet's last lines give the table's accuracies."""
    from benchmarks.whole_process import lenet_accuracy, tutorial_accuracy

    proc = subprocess.run([sys.executable, "-m", "benchmarks.whole_process", "--tutorial-python", sys.executable],
                          cwd=REPO, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 2 and "cannot import torchvision" in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stdout == ""
    assert tutorial_accuracy('noise\n{"accuracy": 0.8586, "seconds": [1.0]}\n') == "85.86%"
    assert lenet_accuracy("epoch 2/2 ...\ntest accuracy 85.86% (8586/10000), test loss 0.41\n") == "85.86%"


def test_whole_process_reads_a_runs_peak_memory_children_included():
    """The peak resident set is /usr/bin/time's: a child that holds about 200 MiB while its parent holds little
    is the run's peak, and this test's own process (torch and a test run's data, often over 400 MiB) is not
    (a child's own wait4 figure inherits the peak of the process that started it)."""
    from benchmarks.whole_process import timed

    holds = "import subprocess, sys; subprocess.run([sys.executable, '-c', 'b = bytearray(200 * 2**20); b[::4096] = b\"x\" * len(b[::4096])'])"
    wall, cpu, peak_mib, text = timed([sys.executable, "-c", holds], dict(os.environ))
    assert 200 <= peak_mib < 400, peak_mib
    assert wall > 0 and cpu > 0 and text == ""
