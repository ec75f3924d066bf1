import contextlib
import functools
import gzip
import sys
import types
from pathlib import Path

import pytest
import torch
from namespaces import require_namespace

from lenet.data.dataset import Dataset

from lenet.data.idx import idx_bytes

from lenet.data.load import load_fashion_mnist

REPO = Path(__file__).resolve().parents[1]
LENET = [sys.executable, "-m", "lenet.cli"]


@pytest.fixture
def ray_namespace() -> None:
    """For a test that starts Ray: it runs in a network namespace of its own (tests/namespaces.py), or
    skips where none can be made, or fails under CI."""
    require_namespace()


@pytest.fixture(autouse=True)
def patched_functions_are_reached(monkeypatch, request):
    """A test fails when it replaced a function (monkeypatch.setattr with a def or a lambda) that
    nothing called: the code calls another name now, and the patch tests nothing (as a fixture that
    patched load_fashion_mnist did, while `lenet train` called load_dataset and trained on 60,000
    images). Each patched attribute must be reached once by any of the functions put there."""
    reached: dict[str, list[int]] = {}
    setattr_ = monkeypatch.setattr

    def counting_setattr(target, name, value=NOT_GIVEN, raising=True):
        if value is NOT_GIVEN:  # setattr("package.module.attribute", value)
            label, value = str(target), name
        else:
            label = f"{getattr(target, '__name__', type(target).__name__)}.{name}"
        if isinstance(value, types.FunctionType):
            calls = reached.setdefault(label, [0])
            original = value

            @functools.wraps(original)
            def value(*args, **kwargs):
                calls[0] += 1
                return original(*args, **kwargs)

        if label == str(target):
            return setattr_(target, value, raising=raising)
        return setattr_(target, name, value, raising=raising)

    monkeypatch.setattr = counting_setattr
    yield
    if request.node.get_closest_marker("tripwires"):  # its patches are meant to stay unreached; it asserts so itself
        return
    unreached = sorted(label for label, calls in reached.items() if not calls[0])
    if unreached:
        pytest.fail(f"patched, but never called: {', '.join(unreached)}; the code calls another name now, "
                    "so the patch tests nothing", pytrace=False)


NOT_GIVEN = object()


@pytest.fixture(scope="session")
def fmnist() -> Dataset:
    """The real data set. `make test` installs it; a missing set fails, it never skips."""
    return load_fashion_mnist(download=False)


def write_idx(path: Path, array: torch.Tensor, gz: bool = True) -> Path:
    data = idx_bytes(array)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def write_csv(path, rows: int, header=True, seed=0, width=784):
    """A CSV in Kaggle's Fashion-MNIST form: a label (0 to 2) then `width` random pixels per row."""
    g = torch.Generator().manual_seed(seed)
    lines = ["label," + ",".join(f"pixel{i}" for i in range(1, 785))] if header else []
    for _ in range(rows):
        label = int(torch.randint(0, 3, (1,), generator=g))
        pixels = torch.randint(0, 256, (width,), generator=g).tolist()
        lines.append(",".join(map(str, [label, *pixels])))
    path.write_text("\n".join(lines) + "\n")
    return path


def make_folder(root, counts: dict[str, int], seed=0):
    """A folder data set: a sub-folder per class of RGB PNGs, each class a bright bar at its own height."""
    from PIL import Image

    g = torch.Generator().manual_seed(seed)
    for label, (name, n) in enumerate(counts.items()):
        (root / name).mkdir(parents=True)
        for i in range(n):
            pixels = torch.randint(0, 30, (28, 28), generator=g, dtype=torch.uint8)
            pixels[4 + 8 * label : 10 + 8 * label, 4:24] = 255
            Image.fromarray(pixels.numpy()).convert("RGB").save(root / name / f"{i}.png")
    return root


@pytest.fixture(scope="session")
def small_run(fmnist, tmp_path_factory) -> Path:
    """A real run directory of a briefly trained lenet_bn (one epoch on 12,000 images, a few seconds)."""
    from dataclasses import replace

    from lenet import TrainConfig, get_recipe, train

    recipe = replace(get_recipe("seed"), model="lenet_bn", epochs=1, batch_size=128)
    out = tmp_path_factory.mktemp("runs")
    config = TrainConfig(recipe=recipe, recipe_name="seed", device="cpu", out=str(out), name="small", progress=False)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny net on a busy 2-core machine: one thread is many times faster
    try:
        return train(config, data=fmnist.subset(12_000, 1_000)).run_dir
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def colour_run(tmp_path_factory) -> tuple[Path, Path]:
    """A colour run: the default recipe, 3 epochs on test_colour's folder of red, green and blue discs (40 a class,
    read as 3x32x32), a few seconds; (its run directory, the folder)."""
    from dataclasses import replace

    from benchmarks.colour import draw_discs

    from lenet import TrainConfig, get_recipe, train

    tmp = tmp_path_factory.mktemp("colour")
    root = draw_discs(tmp / "discs", 40)
    recipe = replace(get_recipe("default"), epochs=3)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run = train(TrainConfig(recipe=recipe, recipe_name="default", dataset=f"folder:{root}", device="cpu",
                                out=str(tmp / "runs"), name="discs", progress=False)).run_dir  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    return run, root


@pytest.fixture(scope="session")
def live_server(small_run):
    """`lenet serve` as a user runs it, on 127.0.0.1 and a free port; yields its base URL."""
    with serving(small_run) as url:
        yield url


@contextlib.contextmanager
def serving(run: Path):
    """`lenet serve RUN --port 0` in a process of its own while the block runs; its base URL."""
    import re
    import selectors
    import subprocess
    import time

    proc = subprocess.Popen([*LENET, "serve", str(run), "--port", "0"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        selector = selectors.DefaultSelector()
        selector.register(proc.stdout, selectors.EVENT_READ)
        deadline, line = time.monotonic() + 120, ""
        while "serving" not in line and time.monotonic() < deadline and proc.poll() is None:
            if selector.select(timeout=1):
                line = proc.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:\d+/", line)
        assert match, f"lenet serve did not start: {line!r} {proc.stderr.read() if proc.poll() is not None else ''}"
        yield match.group(0).rstrip("/")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def pytest_addoption(parser):
    parser.addoption("--write-fuzz-table", action="store_true",
                     help="write tests/test_fuzz.py's counts into RELIABILITY.md's table (a run of the whole file)")  # fmt: skip


def pytest_terminal_summary(terminalreporter, config):
    """After a run that fuzzed, how many generated inputs each kind of input got."""
    fuzz = sys.modules.get("test_fuzz")
    counts = getattr(fuzz, "COUNTS", None)
    if counts:
        terminalreporter.write_sep("-", "fuzzed inputs (tests/test_fuzz.py): generated, valid results, refused")
        for kind, n in counts.items():
            valid = fuzz.VALID[kind]
            terminalreporter.write_line(f"{n:>7,} {valid:>6,} {n - valid:>6,}  {fuzz.KINDS[kind][0]} (-k {kind})")
        terminalreporter.write_line(f"{sum(counts.values()):>7,} {sum(fuzz.VALID.values()):>6,} "
                                    f"{sum(counts.values()) - sum(fuzz.VALID.values()):>6,}  in all")  # fmt: skip
        if config.getoption("write_fuzz_table") and set(counts) == set(fuzz.KINDS):
            terminalreporter.write_line(f"written to RELIABILITY.md's {fuzz.TABLE!r} section")
