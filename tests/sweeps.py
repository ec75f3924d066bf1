"""What the sweep tests share: the space they sweep, `lenet sweep` in a namespace and session of its own, and
readers of a sweep directory mid-run. The Ray tests are in two files (test_sweep.py, test_sweep_faults.py),
so that pytest's workers (--dist loadfile) run them side by side."""

import importlib.util
import ipaddress
import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from namespaces import in_loopback_namespace, require_namespace, stop_session

from conftest import LENET, REPO

needs_ray = pytest.mark.skipif(
    importlib.util.find_spec("ray") is None and not os.environ.get("CI"),
    reason="Ray is not installed (pip install 'lenet[sweep]'; make installs it)",
)
# A test that starts Ray starts it in a loopback-only network namespace (the ray_namespace fixture), or not
# at all, and fails under CI.

# 4 configurations: a 2-point grid crossed with drawn weight decays; 2,000 training images, 2 epochs.
SPACE = """
base = "default"
trials = 4
val_split = 500
[recipe]
model = "lenet_bn"
epochs = 2
batch_size = 128
[vary]
lr = [0.005, 0.01]
weight_decay = { loguniform = [0.001, 0.1] }
[data]
train_subset = 2000
test_subset = 500
"""


def space_file(tmp_path: Path, text: str = SPACE) -> Path:
    path = tmp_path / "space.toml"
    path.write_text(text)
    return path


def interfaces(pid: int) -> list[str]:
    """The network interfaces `pid` sees (its namespace's)."""
    return [line.split(":")[0].strip() for line in Path(f"/proc/{pid}/net/dev").read_text().splitlines()[2:]]


def listening_addresses(pid: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """The local address of every listening TCP socket in `pid`'s network namespace (from /proc, as ss reads it)."""
    found = []
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            if state == "0A":  # LISTEN; the address is hex, in 32-bit host-order (little-endian) words
                raw = bytes.fromhex(local.split(":")[0])
                packed = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
                address = ipaddress.ip_address(packed)
                found.append(getattr(address, "ipv4_mapped", None) or address)
    return found


class Sweep:
    """`lenet sweep ARGS` in a new session (its id is the driver's pid) and a loopback-only network namespace."""

    def __init__(self, *args, cwd: Path = REPO, cpus: int = 2):
        command = in_loopback_namespace([*LENET, "sweep", *args, "--local-cpus", str(cpus)])
        self.proc = subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     start_new_session=True)  # fmt: skip

    def wait(self, timeout: float = 300, code: int = 0) -> tuple[str, str]:
        try:
            out, err = self.proc.communicate(timeout=timeout)
        finally:
            stop_session(self.proc.pid)
        assert self.proc.returncode == code, err[-3000:]
        return out, err

    def wait_for(self, condition, what: str, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                stop_session(self.proc.pid)
                pytest.fail(f"never saw {what}: exit {self.proc.poll()}, {self.proc.stderr.read()[-2000:]}")
            time.sleep(0.05)


def epochs_done(run_dir: Path) -> int:
    try:
        return max(0, len((run_dir / "metrics.csv").read_text().splitlines()) - 1)
    except OSError:
        return 0


def runs_under_way(sweep_dir: Path) -> list[Path]:
    """Run directories with a completed epoch and no summary.json: a trial is training them now."""
    return [p.parent for p in sweep_dir.glob("trial-*/metrics.csv") if epochs_done(p.parent) >= 1
            and not (p.parent / "summary.json").exists()]  # fmt: skip


class Planted:
    """A pickle that leaves a marker file when unpickled: planted as Tune's state, it shows nobody read it."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "unpickled"))


def read_table(sweep_dir: Path) -> dict:
    return json.loads((sweep_dir / "sweep.json").read_text())


def finished_sweep_dir(tmp_path_factory) -> Path:
    """One uninterrupted sweep of SPACE, driven by `lenet sweep`: the reference a disturbed sweep must equal."""
    require_namespace()
    tmp = tmp_path_factory.mktemp("sweep")
    sweep = Sweep(str(space_file(tmp)), "--out", str(tmp / "runs"), "--name", "whole")
    out, err = sweep.wait()
    assert "trials 4/4 done" in out and "best recipe written to" in out
    assert "network_util" not in out + err and "Traceback" not in err  # Ray's chatter is kept off the screen
    return tmp / "runs" / "whole"
