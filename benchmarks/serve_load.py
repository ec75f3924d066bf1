"""A bounded load test of `lenet serve` on loopback: latency percentiles and throughput.

    python -m benchmarks.serve_load RUN [--requests 5000] [--concurrency 32 8] [--write BENCHMARKS.md]
                                        [--servers "--runtime onnxruntime" "--runtime torch"] [--rounds 1]
                                        (int8 beside fp32: --servers "--runtime onnxruntime" "--runtime onnxruntime-int8")
                                        [--heavy-clients 1] [--heavy-side 4800]

Starts `lenet serve RUN` on 127.0.0.1 and a free port, once per --servers entry (its options), sends
single-image PNG uploads (test images) from asyncio clients in this process to one server at a
time, every server in turn for each of --rounds rounds (settings compared side by side, as this
machine's speed drifts), and stops the servers when done. Each run is a fixed
number of requests, so the test stops by itself; any error or non-200 answer is counted. With
--write FILE the results replace FILE's `serving` section (benchmarks/sections.py).

With --heavy-clients N, each row is run twice, side by side: as above, then with N more clients
that, for as long as the well-behaved ones run, send one decompression-heavy PNG after another (a
few KB that decode to --heavy-side squared pixels, within the server's per-request budget). The
well-behaved clients' latencies are the row's; the heavy clients' answers are counted beside them.
"""

import argparse
import asyncio
import os
import platform
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx2 as httpx

from lenet.inference.settings import DEFAULTS
from benchmarks.sections import write_section
from benchmarks.train_speed import load_average

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
    heavy_clients: int = 0  # clients sending decompression-heavy images meanwhile
    heavy_answers: dict[int, int] = field(default_factory=dict)  # their answers: status code -> count
    heavy_seconds: list[float] = field(default_factory=list)  # and how long each took

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


def heavy_png(side: int) -> bytes:
    """A PNG of side x side black pixels: a few KB that take the server a core's tenth of a second or more."""
    from io import BytesIO

    from PIL import Image

    buffer = BytesIO()
    Image.new("L", (side, side)).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


async def load(url: str, pngs: list[bytes], requests: int, concurrency: int, heavy: bytes = b"",
               heavy_clients: int = 0) -> LoadResult:  # fmt: skip
    latencies: list[float] = []
    errors = 0
    remaining = iter(range(requests))
    answers: dict[int, int] = {}
    heavy_seconds: list[float] = []
    done = asyncio.Event()
    limits = httpx.Limits(max_connections=concurrency + heavy_clients, max_keepalive_connections=concurrency + heavy_clients)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:

        async def heavy_worker() -> None:
            while not done.is_set():
                start = time.perf_counter()
                try:
                    status = (await client.post("/predict", files={"files": ("heavy.png", heavy, "image/png")})).status_code
                except httpx.HTTPError:
                    status = 0
                heavy_seconds.append(time.perf_counter() - start)
                answers[status] = answers.get(status, 0) + 1

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

        heavies = [asyncio.create_task(heavy_worker()) for _ in range(heavy_clients)]
        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - start
        done.set()
        await asyncio.gather(*heavies)  # each finishes the request it is in
    return LoadResult(concurrency, requests, errors, seconds, latencies, heavy_clients=heavy_clients,
                      heavy_answers=answers, heavy_seconds=heavy_seconds)  # fmt: skip


def served_accuracy(url: str, run: str) -> tuple[float, str]:
    """The server's test accuracy, every test image sent as JSON pixels (64 a request), and its views."""
    from lenet.data.load import load_dataset
    from lenet.runs.checkpoint import load as load_model

    model = load_model(run)
    data = load_dataset(model.data.name)
    classes, correct, views = model.data.classes, 0, ""
    with httpx.Client(base_url=url, timeout=300) as client:
        for start in range(0, len(data.test_labels), 64):
            images, labels = data.test_images[start : start + 64], data.test_labels[start : start + 64]
            answer = client.post("/predict?top_k=1", json={"images": [img[0].tolist() for img in images]}).json()
            correct += sum(p["label"] == classes[int(label)] for p, label in zip(answer["predictions"], labels))
            views = answer.get("views", "")
    return correct / len(data.test_labels), views


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc (0 where there is none)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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
    heavy = any(r.heavy_clients for r in results)
    extra = " heavy clients | their answers (status: count), mean s |" if heavy else ""
    rows = ["| `lenet serve` options | concurrent clients | requests | errors | p50 ms | p99 ms | max ms | req/s | server CPU ms/req | load avg before |" + extra,
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |" + " --- | --- |" * heavy]  # fmt: skip
    for r in results:
        rows.append(f"| `{r.server}` | {r.concurrency} | {r.requests:,} | {r.errors} | {r.percentile(50):.1f} | {r.percentile(99):.1f} | "
                    f"{max(r.latencies_ms):.1f} | {r.per_second:,.0f} | {r.server_cpu_ms:.2f} | {r.load_average} |"
                    + (f" {r.heavy_clients} | {heavy_answers(r)} |" if heavy else ""))  # fmt: skip
    return "\n".join(rows)


def heavy_answers(r: LoadResult) -> str:
    if not r.heavy_clients:
        return "-"
    counts = ", ".join(f"{status}: {n:,}" for status, n in sorted(r.heavy_answers.items()))
    mean = sum(r.heavy_seconds) / len(r.heavy_seconds) if r.heavy_seconds else 0.0
    return f"{counts}; {mean:.2f} s"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="run directory or checkpoint to serve")
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[32, 8])
    parser.add_argument("--servers", nargs="+", metavar="OPTIONS", default=["--runtime onnxruntime", "--runtime torch"],
                        help="one server per entry, each entry its lenet serve options in one quoted string")
    parser.add_argument("--rounds", type=int, default=1, help="load every server this many times, in turn")
    parser.add_argument("--write", type=Path, help="put the results in this Markdown file's serving section")
    parser.add_argument("--heavy-clients", type=int, default=0,
                        help="run each row again beside this many clients sending decompression-heavy images")
    parser.add_argument("--heavy-side", type=int, default=4800,
                        help="the heavy images' side in pixels (default: 4800, 23 MP, within the server's budget)")
    parser.add_argument("--accuracy", action="store_true",
                        help="after the load, send each server the whole test set and give its accuracy beside its latency")
    args = parser.parse_args()
    heavy = heavy_png(args.heavy_side) if args.heavy_clients else b""

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
                    for heavy_clients in sorted({0, args.heavy_clients}):  # side by side: alone, then beside them
                        busy, cpu = load_average(), cpu_seconds(proc.pid)
                        result = asyncio.run(load(url, pngs, args.requests, concurrency, heavy, heavy_clients))
                        result.server_cpu_ms, result.load_average = (cpu_seconds(proc.pid) - cpu) * 1000 / args.requests, busy
                        result.server = options
                        results.append(result)
                        print(table(results[-1:]).splitlines()[-1], flush=True)
        accuracy = []
        for options, _, url in servers if args.accuracy else ():
            value, views = served_accuracy(url, args.run)
            accuracy.append(f"`{options}`: {value:.2%} ({views})")
        batching, runtimes = [], []
        for options, _, url in servers:
            with httpx.Client(base_url=url) as client:
                health = client.get("/healthz").json()
                # What ran the model: an int8 runtime names its own and fp32's test accuracy here.
                runtimes.append(f"`{options}`: {client.get('/model').json()['runtime']}")
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
        "(1 minute, before each row) shows other work on the machine competing for them"
        + (f"; server CPU per request counts the heavy clients' decoding too. A heavy client sends one "
           f"{args.heavy_side}x{args.heavy_side} PNG ({len(heavy):,} bytes, {args.heavy_side ** 2:,} pixels) after "
           "another for as long as the row's well-behaved clients run" if args.heavy_clients else "")
        + ".\n\n"
        f"Runtimes (`GET /model`): {'; '.join(runtimes)}.\n\n"
        f"Micro-batching: {'; '.join(batching)}.\n"
        + (f"\nTest accuracy as served (every test image sent as JSON pixels after the load, the answer's "
           f"first class against its label): {'; '.join(accuracy)}.\n" if accuracy else "")
    )
    print(f"## Serving\n\n{text}")
    if args.write:
        write_section(args.write, "serving", text)
    return 1 if any(r.errors for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
