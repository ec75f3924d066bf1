"""A two-node Ray cluster on this machine, a sweep on it, and the second node killed mid-sweep.

    python tests/cluster_sweep.py SPACE OUT NAME      (run by tests/test_sweep.py, inside `unshare --net`)

Meant to run in a network namespace with only `lo`: Ray 2.60 listens on the host's own address
and on every interface whatever --node-ip-address says, so only there is 127.0.0.1 all it can
reach. It starts a head and a second node (`ray start`, one CPU each, token authentication on),
runs `lenet sweep SPACE --address` as the driver, kills the second node's raylet and workers while
a trial trains there, waits for the sweep to end, stops everything it started (by the process ids
of each `ray start`'s session), and prints one JSON object: what it killed, the driver's exit code
and output. The test judges the results from the sweep directory.
"""

import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from namespaces import cmdline, session_pids, stop_session  # beside this script: sys.path[0]
from sweeps import epochs_done

RAY = str(Path(sys.executable).parent / "ray")  # the ray command of this Python
PORT = 6379  # the namespace is new: nothing else listens in it
NODE = ["--node-ip-address", "127.0.0.1", "--num-cpus", "1", "--disable-usage-stats",
        # Two nodes on one host would each claim all of its memory.
        "--memory", str(1_500_000_000), "--object-store-memory", str(100_000_000)]  # fmt: skip
DEADLINE_S = 140  # the whole script; the test gives it a little more


def main(space: str, out: str, name: str) -> dict:
    start = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="lenet-ray-", dir="/tmp"))  # short: Ray's socket paths must fit 107 bytes
    token = work / "auth_token"
    token.write_text(secrets.token_hex(32))
    token.chmod(0o600)
    env = {
        **os.environ,
        # Token authentication on, with a token of this cluster's own (not ~/.ray/auth_token).
        "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token),
        # The head notices the dead node in about 3 s rather than the default 15 s.
        "RAY_health_check_period_ms": "1000", "RAY_health_check_failure_threshold": "3",
    }  # fmt: skip
    sessions: dict[str, int] = {}
    result: dict = {}
    try:
        # Each in a session of its own: every process of a node (raylet, agents, workers) keeps
        # its `ray start`'s session id, which is how the second node is found and killed.
        # --temp-dir per node: Ray records "the latest cluster" there, not in /tmp/ray for every local Ray to find.
        head = [RAY, "start", "--head", "--port", str(PORT), "--include-dashboard", "false",
                "--temp-dir", str(work / "head"), *NODE]  # fmt: skip
        sessions["head"] = started(head, env)
        other = [RAY, "start", "--address", f"127.0.0.1:{PORT}", "--temp-dir", str(work / "other"), *NODE]
        sessions["other"] = started(other, env)
        result["cluster_up_s"] = round(time.monotonic() - start, 1)
        driver = subprocess.Popen([sys.executable, "-m", "lenet.cli", "sweep", space, "--address", f"127.0.0.1:{PORT}",
                                   "--out", out, "--storage", out, "--name", name], env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, start_new_session=True)  # fmt: skip
        sessions["driver"] = driver.pid
        result["killed"] = kill_mid_trial(sessions["other"], Path(out) / name, driver, start)
        try:
            stdout, stderr = driver.communicate(timeout=max(1, DEADLINE_S - (time.monotonic() - start)))
        except subprocess.TimeoutExpired:
            driver.kill()
            stdout, stderr = driver.communicate()
            result["timed_out"] = True
        # The line naming the cluster comes first, and Ray may print pages of its own stats after it.
        cluster = next((line for line in stdout.splitlines() if "on the Ray cluster at" in line), None)
        result.update(driver_exit=driver.returncode, cluster_line=cluster, stdout=stdout[-4000:], stderr=stderr[-4000:])
    finally:
        for session in reversed(list(sessions.values())):
            stop_session(session)
        shutil.rmtree(work, ignore_errors=True)
    result["seconds"] = round(time.monotonic() - start, 1)
    return result


def started(command: list[str], env: dict) -> int:
    """Run `ray start ...` in a new session; its session id (the pid) once it has started its node."""
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)  # fmt: skip
    output, _ = proc.communicate(timeout=60)
    if proc.returncode != 0:
        stop_session(proc.pid)
        raise RuntimeError(f"{' '.join(command[:3])} failed: {output[-2000:]}")
    return proc.pid


def kill_mid_trial(session: int, sweep_dir: Path, driver: subprocess.Popen, start: float) -> dict:
    """Once a trial on the second node has finished an epoch of a run, SIGKILL every process of that node."""
    while time.monotonic() - start < DEADLINE_S / 2 and driver.poll() is None:
        for pid in session_pids(session):
            run_dir = trial_run_dir(pid, sweep_dir)
            if run_dir is not None and epochs_done(run_dir) >= 1 and not (run_dir / "summary.json").exists():
                victims = {p: cmdline(p) for p in session_pids(session)}
                stop_session(session, signals=(signal.SIGKILL,))
                return {"run": run_dir.name, "epochs_done": epochs_done(run_dir), "processes": victims,
                        "raylet": any("raylet" in c.split(" ")[0] for c in victims.values()),
                        "at_s": round(time.monotonic() - start, 1)}  # fmt: skip
        time.sleep(0.05)
    return {}


def trial_run_dir(pid: int, sweep_dir: Path) -> Path | None:
    """The run directory a Tune trial process trains, if `pid` is one: Tune runs it in .../unit-NNNN/ (one seed a trial)."""
    if not cmdline(pid).startswith("ray::ImplicitFunc"):
        return None
    try:
        cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
    except OSError:
        return None
    units = [part for part in cwd.parts if re.fullmatch(r"unit-\d{4}", part)]
    return sweep_dir / units[-1].replace("unit-", "trial-") if units else None


if __name__ == "__main__":
    print(json.dumps(main(*sys.argv[1:])))
