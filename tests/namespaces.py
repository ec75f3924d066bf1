"""Network namespaces for the tests that start Ray, and the process bookkeeping that stops what they start.

Ray 2.60 listens on the host's own address and on every interface even when told 127.0.0.1, so a
test that starts Ray starts it in a network namespace of its own, where `lo` is all there is. Where
no namespace can be made those tests skip, and under CI (`CI` set) they fail: a claim the suite
cannot check must not pass silently. Imported by conftest.py and by tests/cluster_sweep.py, which
runs alone inside such a namespace.
"""

from __future__ import annotations

import functools
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@functools.cache
def namespace_problem() -> str | None:
    """Why no network namespace with only `lo` can be made here (None: one can)."""
    if os.geteuid() != 0:
        return "needs root to make a network namespace (unshare --net) for Ray, which otherwise listens beyond 127.0.0.1"
    missing = [tool for tool in ("unshare", "ip") if shutil.which(tool) is None]
    if missing:
        return f"needs {' and '.join(missing)} (util-linux, iproute2) to keep Ray's listeners in a loopback-only namespace"
    probe = subprocess.run(["unshare", "--net", "sh", "-c", "ip link set lo up"], capture_output=True, text=True)
    if probe.returncode != 0:
        reason = (probe.stderr.strip().splitlines() or [f"exit {probe.returncode}"])[0]
        return f"cannot make a network namespace for Ray (unshare --net: {reason})"
    return None


def require_namespace() -> None:
    """Skip the calling test where no namespace can be made; fail it under CI."""
    import pytest

    problem = namespace_problem()
    if problem is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"under CI the Ray tests must run: {problem}")
    pytest.skip(problem)


def in_loopback_namespace(command: list[str]) -> list[str]:
    """`command` in a new network namespace with only `lo`, up; it replaces the shell, so its pid is the Popen's."""
    return ["unshare", "--net", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", *command]


def network_namespace(pid: int) -> str | None:
    """`pid`'s network namespace (None: the process is gone)."""
    try:
        return os.readlink(f"/proc/{pid}/ns/net")
    except OSError:
        return None


def session_pids(sid: int) -> list[int]:
    """The live processes of session `sid`."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == sid and fields[0] != "Z":
                pids.append(int(entry.name))
    return pids


def stop_session(sid: int, signals=(signal.SIGTERM, signal.SIGKILL)) -> None:
    """Stop every process of session `sid` (one a test started with start_new_session), by its ids."""
    for sig in signals:
        for pid in session_pids(sid):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 5
        while session_pids(sid) and time.monotonic() < deadline:
            time.sleep(0.1)


def stop_namespace(namespace: str) -> None:
    """Kill every process in `namespace`, a network namespace a test made: all of them are the test's."""
    assert namespace != network_namespace(os.getpid())
    for sig in (signal.SIGTERM, signal.SIGKILL):
        members = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and network_namespace(int(p.name)) == namespace]
        for pid in members:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        time.sleep(2 if members and sig == signal.SIGTERM else 0)


def cmdline(pid: int) -> str:
    """A process's command line, as one string ("" once it is gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


# --- two machines that share nothing but a network -----------------------------------------------


class Machine:
    """A "machine" on this host: a network namespace and a mount namespace of its own, held open by a
    sleeping process, with private tmpfs on /tmp and /dev/shm (its runs, Ray's session files and object
    store, its trials' scratch) that no other machine sees. Commands run in it through nsenter; its
    files are read from outside through /proc/PID/root."""

    def __init__(self, name: str):
        self.name = name
        # What the machine must still see of this host where it lies under /tmp (a checkout cloned there,
        # its venv): opened before the private /tmp hides it, then bound back from the open descriptor
        # (--no-canonicalize: mount would otherwise resolve /proc/self/fd/N to the hidden path's name).
        keep = _outermost(sorted({p for p in map(Path, (REPO, sys.prefix, *sys.path))
                                  if p.is_dir() and p.parts[:2] == ("/", "tmp")}))  # fmt: skip
        opened = "".join(f" && exec {3 + i}<{shlex.quote(str(p))}" for i, p in enumerate(keep))
        binds = "".join(f" && mkdir -p {shlex.quote(str(p))} && mount --no-canonicalize --bind /proc/self/fd/{3 + i} "
                        f"{shlex.quote(str(p))} && exec {3 + i}<&-" for i, p in enumerate(keep))  # fmt: skip
        holder = ("mount --make-rprivate /" + opened + " && mount -t tmpfs -o size=2g tmpfs /tmp" + binds + " && "
                  "mount -t tmpfs -o size=1g tmpfs /dev/shm && ip link set lo up && echo ready && exec sleep 3600")
        self.holder = subprocess.Popen(["unshare", "--net", "--mount", "sh", "-c", holder], stdout=subprocess.PIPE,
                                       text=True, start_new_session=True)  # fmt: skip
        if self.holder.stdout.readline().strip() != "ready":
            raise RuntimeError(f"machine {name}: cannot make its namespaces")
        self.pid = self.holder.pid

    def command(self, command: list[str]) -> list[str]:
        return ["nsenter", f"--target={self.pid}", "--net", "--mount", *command]

    def run(self, command: list[str], **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run(self.command(command), capture_output=True, text=True, **kwargs)

    def path(self, inside: str) -> Path:
        """A path of this machine's filesystem, as seen from outside it."""
        return Path(f"/proc/{self.pid}/root") / inside.lstrip("/")

    def processes(self) -> list[int]:
        """Every process in this machine's network namespace but its holder."""
        namespace = network_namespace(self.pid)
        return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and int(p.name) != self.pid
                and network_namespace(int(p.name)) == namespace]  # fmt: skip

    def kill(self) -> None:
        """SIGKILL everything on this machine, then its holder: its tmpfs goes with its mount namespace."""
        for sig in (signal.SIGKILL,):
            for pid in self.processes():
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
        self.holder.kill()
        self.holder.wait()


def _outermost(paths: list[Path]) -> list[Path]:
    """The paths not inside another of them (a bind of the outer one shows the inner ones too)."""
    return [p for p in paths if not any(q != p and q in p.parents for q in paths)]


def connect(a: Machine, b: Machine, subnet: str = "10.213.77") -> tuple[str, str]:
    """Join two machines by a veth pair with addresses of the test's own choosing; their two addresses.

    Each machine's address sits on a bridge of its own that its veth end joins, as on a machine's own
    network card: when one machine dies its veth end goes, and with it the pair, but the other keeps its
    address (its Ray head, its S3 server) instead of losing it with the link.
    """
    suffix = f"{os.getpid() % 100000}"
    left, right = f"lnA{suffix}", f"lnB{suffix}"  # names unique on the host, whose namespace they pass through
    subprocess.run(["ip", "link", "add", left, "type", "veth", "peer", "name", right], check=True)
    subprocess.run(["ip", "link", "set", left, "netns", str(a.pid)], check=True)
    subprocess.run(["ip", "link", "set", right, "netns", str(b.pid)], check=True)
    addresses = (f"{subnet}.1", f"{subnet}.2")
    for machine, link, address in ((a, left, addresses[0]), (b, right, addresses[1])):
        for step in (["ip", "link", "add", "nic0", "type", "bridge"], ["ip", "link", "set", link, "master", "nic0"],
                     ["ip", "addr", "add", f"{address}/24", "dev", "nic0"], ["ip", "link", "set", "nic0", "up"],
                     ["ip", "link", "set", link, "up"]):  # fmt: skip
            subprocess.run(["nsenter", f"--target={machine.pid}", "--net", *step], check=True)
    return addresses
