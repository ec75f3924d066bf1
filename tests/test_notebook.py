"""The tutorial notebook runs (quick mode, in a kernel of this venv), and the stored copy is a full run's."""

import importlib.util

import nbformat
import pytest

from conftest import REPO


def _load_runner():
    spec = importlib.util.spec_from_file_location("run_notebook", REPO / "scripts" / "run_notebook.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


runner = _load_runner()
NOTEBOOKS = pytest.mark.parametrize("path", runner.NOTEBOOKS, ids=lambda path: path.name)


def code_cells(notebook) -> list:
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def printed(notebook) -> str:
    return "".join(out.get("text", "") for cell in code_cells(notebook) for out in cell.outputs
                   if out.output_type == "stream" and out.name == "stdout")  # fmt: skip


def pictures(notebook) -> int:
    return sum("image/png" in out.get("data", {}) for cell in code_cells(notebook) for out in cell.outputs)


def complaints(notebook) -> list:
    """Errors, and anything written to stderr (a library's warning is noise a learner should not see)."""
    return [out for cell in code_cells(notebook) for out in cell.outputs
            if out.output_type == "error" or out.get("name") == "stderr"]  # fmt: skip


@NOTEBOOKS
def test_notebook_runs_in_quick_mode(path, tmp_path):
    # A cell that raises fails this test with the cell and its traceback (nbclient's CellExecutionError).
    notebook = runner.execute(path, quick=True, cwd=tmp_path)
    text = printed(notebook)
    assert "mode: QUICK" in text  # LENET_NOTEBOOK_QUICK reached the kernel
    assert "the cells below use 6,000 training and 2,000 test images" in text
    assert "conv block output: [64, 16, 4, 4] -> flattened: [64, 256]" in text
    assert "total: 44,426 parameters (torch counts 44,426)" in text
    assert "largest weight difference from the hand-written step 0.0e+00" in text  # lenet's Step is the tutorial's
    # samples, curves, confusion, compare, the drawing and what the model saw
    assert pictures(notebook) >= 6
    assert not complaints(notebook)
    assert len(list((tmp_path / "runs").iterdir())) >= 3  # beside the notebook: its working directory


@NOTEBOOKS
def test_stored_notebook_is_a_full_run_without_volatile_metadata(path):
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    cells = code_cells(notebook)
    assert [cell.execution_count for cell in cells] == list(range(1, len(cells) + 1))  # all run, once, in order
    assert all(cell.outputs for cell in cells)
    assert "mode: full" in printed(notebook)
    assert "the cells below use 60,000 training and 10,000 test images" in printed(notebook)
    assert not complaints(notebook)
    assert not [cell for cell in cells if "execution" in cell.metadata]  # timings: a new diff every run
    assert notebook.metadata.kernelspec.name == "python3"  # the reader's own Python kernel, not the test's
