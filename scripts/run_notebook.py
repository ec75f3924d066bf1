"""Run the tutorial notebook, and store its outputs.

    .venv/bin/python scripts/run_notebook.py            # full run, outputs written into the notebook
    .venv/bin/python scripts/run_notebook.py --quick    # LENET_NOTEBOOK_QUICK=1, nothing written

The kernel is this Python (the project's venv), whatever kernels Jupyter knows elsewhere: a
kernel spec made for the run, in a temporary directory put first on JUPYTER_PATH. It talks to
this process over Unix sockets in that directory, not TCP, so it listens on no port. What is
stored leaves out what changes with every run but says nothing (cell timings, the kernel's
Python version), so that a re-run's diff is the numbers that changed. tests/test_notebook.py
runs the notebook through `execute` in quick mode.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import tempfile
from pathlib import Path

NOTEBOOKS = [Path(__file__).resolve().parents[1] / "notebooks" / "lenet_tutorial.ipynb"]
KERNEL = "lenet-venv"  # a name no user's own kernel is likely to have
CELL_TIMEOUT_S = 900


def execute(path: Path, quick: bool, cwd: Path | None = None):
    """The notebook at `path`, executed (an error in a cell raises nbclient's CellExecutionError)."""
    import nbformat
    from ipykernel.kernelspec import write_kernel_spec
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient

    notebook = nbformat.read(path, as_version=4)
    metadata = copy.deepcopy(notebook.metadata)
    saved_env = {name: os.environ.get(name) for name in ("JUPYTER_PATH", "LENET_NOTEBOOK_QUICK")}
    with tempfile.TemporaryDirectory(prefix="lenet-kernel-") as jupyter_dir:
        write_kernel_spec(Path(jupyter_dir) / "kernels" / KERNEL)  # runs sys.executable -m ipykernel_launcher
        os.environ["JUPYTER_PATH"] = os.pathsep.join(filter(None, [jupyter_dir, saved_env["JUPYTER_PATH"]]))
        os.environ["LENET_NOTEBOOK_QUICK"] = "1" if quick else "0"
        # The socket path is absolute: a relative one would be taken from each side's working directory.
        kernel = KernelManager(kernel_name=KERNEL, transport="ipc", ip=str(Path(jupyter_dir) / "kernel"))
        try:
            client = NotebookClient(notebook, km=kernel, timeout=CELL_TIMEOUT_S, record_timing=False,
                                    resources={"metadata": {"path": str(cwd or path.parent)}})  # fmt: skip
            client.execute()
        finally:
            if kernel.has_kernel:  # nbclient shuts down only the kernels it made itself
                kernel.shutdown_kernel(now=True)
            for name, value in saved_env.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
    notebook.metadata = metadata  # the kernel spec a reader's Jupyter should use, not this run's
    return notebook


def main(argv: list[str] | None = None) -> int:
    import nbformat

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path, default=NOTEBOOKS)
    parser.add_argument("--quick", action="store_true", help="quick mode; the notebook file is left as it was")
    args = parser.parse_args(argv)
    for path in args.notebooks:
        print(f"running {path} ({'quick' if args.quick else 'full'} mode)", flush=True)
        notebook = execute(path, args.quick)
        if not args.quick:
            nbformat.write(notebook, path)
            print(f"outputs stored in {path}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
