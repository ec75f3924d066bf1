"""A bounded load test of `lenet serve` on loopback: latency percentiles and throughput.

    python -m benchmarks.serve_load RUN [--requests 5000] [--concurrency 32 8] [--write BENCHMARKS.md]
                                        [--servers "--runtime onnxruntime" "--runtime torch"] [--rounds 1]

Starts `lenet serve RUN` on 127.0.0.1 and a free port, once per --servers entry (its options), sends
single-image PNG uploads (test images) from asyncio clients in this process to one server at a
time, every server in turn for each of --rounds rounds (settings compared side by side, as this
machine's speed drifts), and stops the servers when done. Each run is a fixed
number of requests, so the test stops by itself; any error or non-200 answer is counted. With
--write FILE the results replace FILE's `serving` section (benchmarks/sections.py).
"""

import argparse
import asyncio
import os
import platform
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx2 as httpx

from lenet.inference.serve import DEFAULTS
from benchmarks.sections import write_section

REPO = Path(__file__).resolve().parents[1]
WARMUP = 200


@dataclass
class LoadResult:
    concurrency: int
    requests: int
    errors: int
    seconds: float
    latencies_ms: list[float]
    server_cpu_ms: float = 0.0  # the server process's CPU time per request
    server: str = ""  # the lenet serve options
    load_average: str = ""  # /proc/loadavg's 1-minute figure before the run: other work on the machine

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds


def start_server(run: str, *options: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "lenet.cli", "serve", run, "--port", "0", *options],
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    line = proc.stdout.readline()  # "serving ... at http://127.0.0.1:PORT/ ..."
    match = re.search(r"http://127\.0\.0\.1:\d+", line)
    if not match:
        proc.kill()
        sys.exit(f"lenet serve did not start: {line!r}")
    return proc, match.group(0)


async def load(url: str, pngs: list[bytes], requests: int, concurrency: int) -> LoadResult:
    latencies: list[float] = []
    errors = 0
    remaining = iter(range(requests))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:

        async def worker() -> None:
            nonlocal errors
            for i in remaining:  # shared iterator: the workers split exactly `requests` between them
                files = {"files": ("t.png", pngs[i % len(pngs)], "image/png")}
                start = time.perf_counter()
                try:
                    response = await client.post("/predict", files=files)
                    ok = response.status_code == 200 and response.json()["predictions"][0]["label"]
                except httpx.HTTPError:
                    ok = False
                latencies.append((time.perf_counter() - start) * 1000)
                errors += not ok

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - start
    return LoadResult(concurrency, requests, errors, seconds, latencies)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc (0 where there is none)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load_average() -> str:
    path = Path("/proc/loadavg")
    return path.read_text().split()[0] if path.exists() else "?"


def sample_pngs(url: str) -> list[bytes]:
    with httpx.Client(base_url=url) as client:
        return [client.get(s["url"]).content for s in client.get("/samples").json()]


def machine() -> str:
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = re.search(r"model name\s*:\s*(.+)", cpuinfo)
    cores = len(re.findall(r"^processor\s*:", cpuinfo, re.M))
    import fastapi
    import torch
    import uvicorn

    return (f"{model.group(1).strip() if model else platform.processor()}, {cores} logical cores; Python "
            f"{platform.python_version()}, torch {torch.__version__}, fastapi {fastapi.__version__}, "
            f"uvicorn {uvicorn.__version__} ({uvicorn_stack()}), httpx2 {httpx.__version__} (client)")  # fmt: skip


def uvicorn_stack() -> str:
    """The event loop and HTTP parser uvicorn takes by itself: uvloop and httptools where installed."""
    from importlib.metadata import PackageNotFoundError, version

    def found(name: str) -> str | None:
        try:
            return f"{name} {version(name)}"
        except PackageNotFoundError:
            return None

    return f"{found('uvloop') or 'asyncio'}, {found('httptools') or 'h11'}"


def table(results: list[LoadResult]) -> str:
    rows = ["| `lenet serve` options | concurrent clients | requests | errors | p50 ms | p99 ms | max ms | req/s | server CPU ms/req | load avg before |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for r in results:
        rows.append(f"| `{r.server}` | {r.concurrency} | {r.requests:,} | {r.errors} | {r.percentile(50):.1f} | {r.percentile(99):.1f} | "
                    f"{max(r.latencies_ms):.1f} | {r.per_second:,.0f} | {r.server_cpu_ms:.2f} | {r.load_average} |")  # fmt: skip
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="run directory or checkpoint to serve")
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[32, 8])
    parser.add_argument("--servers", nargs="+", metavar="OPTIONS", default=["--runtime onnxruntime", "--runtime torch"],
                        help="one server per entry, each entry its lenet serve options in one quoted string")
    parser.add_argument("--rounds", type=int, default=1, help="load every server this many times, in turn")
    parser.add_argument("--write", type=Path, help="put the results in this Markdown file's serving section")
    args = parser.parse_args()

    results: list[LoadResult] = []
    servers = []
    try:
        for options in args.servers:
            servers.append((options, *start_server(args.run, *options.split())))
        pngs = sample_pngs(servers[0][2])
        for _, _, url in servers:
            asyncio.run(load(url, pngs, WARMUP, 8))
        for _ in range(args.rounds):
            for options, proc, url in servers:
                for concurrency in args.concurrency:
                    busy, cpu = load_average(), cpu_seconds(proc.pid)
                    result = asyncio.run(load(url, pngs, args.requests, concurrency))
                    result.server_cpu_ms, result.load_average = (cpu_seconds(proc.pid) - cpu) * 1000 / args.requests, busy
                    result.server = options
                    results.append(result)
                    print(table(results[-1:]).splitlines()[-1], flush=True)
        batching = []
        for options, _, url in servers:
            with httpx.Client(base_url=url) as client:
                health = client.get("/healthz").json()
            batch = health["images"] / max(health["forward_passes"], 1)
            batching.append(f"`{options}`: {health['images']:,} images in {health['forward_passes']:,} forward passes "
                            f"({batch:.1f} images per pass on average, warm-up included)")  # fmt: skip
    finally:
        for _, proc, _ in servers:
            proc.terminate()
            proc.wait(timeout=30)
    text = (  # the section sits under BENCHMARKS.md's own "## Serving" heading
        f"`python -m benchmarks.serve_load RUN`: `lenet serve` (uvicorn, one worker; `--max-batch {DEFAULTS.max_batch}`, "
        f"`--max-wait-ms {DEFAULTS.max_wait_ms:g}`, `--runtime-threads {DEFAULTS.runtime_threads}`, its defaults, and the options in each row) on 127.0.0.1, "
        f"{args.requests:,} single-image PNG uploads (28x28 test images) to `POST /predict` per row, from asyncio "
        f"httpx2 clients in one process on the same machine, after {WARMUP} warm-up requests; one server per "
        f"row's options, all started first and loaded one at a time, in turn, {args.rounds} round(s).\n\n"
        f"Machine: {machine()}.\n\n{table(results)}\n\n"
        "Latency is measured by the client, which shares the 2 cores with the server; the load average "
        "(1 minute, before each row) shows other work on the machine competing for them.\n\n"
        f"Micro-batching: {'; '.join(batching)}.\n"
    )
    print(f"## Serving\n\n{text}")
    if args.write:
        write_section(args.write, "serving", text)
    return 1 if any(r.errors for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
