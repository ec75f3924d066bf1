"""`lenet sweep` on two machines that share no disk, one of them lost mid-trial (`make cluster-test`).

Two "machines" on this host (tests/namespaces.py): each a network namespace and a mount namespace of
its own with private tmpfs on /tmp and /dev/shm, joined by a veth pair. The head runs moto's S3
server (what Ray's own tests use for S3; a real HTTP server speaking S3, started here), a Ray head
and the driver, whose --out is in the head's tmpfs; the other machine runs a Ray node. The sweep's
Tune storage is the bucket (`--storage s3://...`). While a trial trains on the other machine and has
finished an epoch, every process there is SIGKILLed and its filesystems go with it. Every trial must
then end on the head from its last reported checkpoint, no finished epoch trained twice, the
driver's --out must hold every run directory, and the table must equal an undisturbed sweep's.
Token authentication is on; all traffic stays in the two namespaces; everything started is stopped.

Minutes long, so outside `make test`, whose two-node test (tests/test_sweep.py) is the short variant.
"""

import json
import os
import re
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest
from namespaces import Machine, cmdline, connect, require_namespace, stop_session
from sweeps import SPACE, epochs_done, finished_sweep_dir

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(900)]

RAY = str(Path(sys.executable).parent / "ray")
NODE = ["--num-cpus", "1", "--disable-usage-stats", "--memory", str(1_500_000_000),
        "--object-store-memory", str(100_000_000)]  # fmt: skip
S3_PORT, RAY_PORT, DEADLINE_S = 5555, 6379, 420


def trial_on(machine: Machine) -> int | None:
    """The Tune trial (unit) a worker on `machine` trains now, from its working directory (.../unit-NNNN)."""
    for pid in machine.processes():
        if cmdline(pid).startswith("ray::ImplicitFunc"):
            try:
                found = re.findall(r"unit-(\d{4})", os.readlink(f"/proc/{pid}/cwd"))
            except OSError:
                continue
            if found:
                return int(found[-1])
    return None


def in_head(head: Machine, env: dict, code: str) -> str:
    proc = head.run([sys.executable, "-c", code], env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_a_sweep_on_two_machines_that_share_no_disk_loses_nothing(tmp_path_factory):
    require_namespace()
    reference = json.loads((finished_sweep_dir(tmp_path_factory) / "sweep.json").read_text())
    start = time.monotonic()
    head, other = Machine("head"), Machine("other")
    started: list[subprocess.Popen] = []
    try:
        head_ip, other_ip = connect(head, other)
        token = secrets.token_hex(32)
        for machine in (head, other):  # each machine its own copy, readable by its owner only
            machine.path("/tmp/auth_token").write_text(token)
            machine.path("/tmp/auth_token").chmod(0o600)
        env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": "/tmp/auth_token",
               "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1",
               "AWS_ENDPOINT_URL": f"http://{head_ip}:{S3_PORT}",
               "RAY_health_check_period_ms": "1000", "RAY_health_check_failure_threshold": "3"}  # fmt: skip
        s3 = subprocess.Popen(head.command([sys.executable, "-m", "moto.server", "-H", head_ip, "-p", str(S3_PORT)]),
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
        started.append(s3)
        in_head(head, env, "import boto3, time\nfor _ in range(100):\n    try:\n"
                           "        boto3.client('s3').create_bucket(Bucket='sweeps'); break\n"
                           "    except Exception:\n        time.sleep(0.2)\nelse:\n    raise SystemExit('no S3 server')")
        for machine, command in ((head, ["--head", "--port", str(RAY_PORT), "--node-ip-address", head_ip,
                                         "--include-dashboard", "false"]),
                                 (other, ["--address", f"{head_ip}:{RAY_PORT}", "--node-ip-address", other_ip])):  # fmt: skip
            proc = machine.run([RAY, "start", *command, "--temp-dir", "/tmp/ray", *NODE], env=env, timeout=120)
            assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        head.path("/tmp/space.toml").write_text(SPACE)
        sweep = ["sweep", "/tmp/space.toml", "--address", f"{head_ip}:{RAY_PORT}", "--storage", "s3://sweeps/runs",
                 "--out", "/tmp/runs", "--name", "two"]  # fmt: skip
        driver = subprocess.Popen(head.command([sys.executable, "-m", "lenet.cli", *sweep]), env=env, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)  # fmt: skip
        started.append(driver)
        out = head.path("/tmp/runs/two")
        killed = None
        while killed is None and driver.poll() is None and time.monotonic() - start < DEADLINE_S / 2:
            unit = trial_on(other)
            run_dir = out / f"trial-{unit:04d}" if unit is not None else None
            if run_dir is not None and epochs_done(run_dir) >= 1 and not (run_dir / "summary.json").exists():
                killed = {"unit": unit, "epochs": epochs_done(run_dir), "processes": {p: cmdline(p) for p in other.processes()}}
                other.kill()  # its raylet, workers and tmpfs: gone
            time.sleep(0.05)
        assert killed, "no trial finished an epoch on the other machine"
        stdout, stderr = driver.communicate(timeout=max(10, DEADLINE_S - (time.monotonic() - start)))
        assert driver.returncode == 0, stderr[-3000:]
        assert f"on the Ray cluster at {head_ip}:{RAY_PORT}: 2 CPUs" in stdout and f"trial {killed['unit']} retried" in stdout
        assert any("raylet" in c.split(" ")[0] for c in killed["processes"].values())
        table = json.loads((out / "sweep.json").read_text())
        assert table["rows"] == reference["rows"]  # the undisturbed sweep's table
        assert all((out / row["seeds"][0]["run"] / "summary.json").exists() for row in table["rows"])
        # The retried trial's reports, from Tune's storage in the bucket: it began after the epochs already done.
        key = f"runs/two/tune/unit-{killed['unit']:04d}/result.json"
        text = in_head(head, env, f"import boto3\nprint(boto3.client('s3').get_object(Bucket='sweeps', "
                                  f"Key='{key}')['Body'].read().decode())")  # fmt: skip
        epochs = [json.loads(line)["epoch"] for line in text.splitlines() if line.strip()]
        after = epochs[epochs.index(killed["epochs"]) + 1 :] if killed["epochs"] in epochs else epochs
        assert after and after[0] == killed["epochs"] + 1 and sorted(set(epochs)) == list(range(1, 3))
    except BaseException:
        keep_logs(head, tmp_path_factory.mktemp("head-logs"))
        raise
    finally:
        for proc in started:
            stop_session(proc.pid)
        head.kill()
        other.kill()


def keep_logs(head: Machine, into: Path) -> None:
    """Ray's logs of the head, out of its tmpfs before it goes, for whoever reads a failure."""
    import shutil

    for session in head.path("/tmp/ray").glob("session_2*"):
        shutil.copytree(session / "logs", into / session.name, dirs_exist_ok=True, ignore_dangling_symlinks=True)
    print(f"the head's Ray logs: {into}")
