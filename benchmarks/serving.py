"""Serving benchmark: `variants serve` side by side with the stock `mlflow models serve` on
the same registered champions, under load, with a soak and an oversized body.

Needs a store with champions (after `variants run --data-dir ../shared/data`). Starts each
server on a loopback port, drives it with a bounded httpx load generator (N clients, each
sending its next request when the last is answered, for --duration seconds per level),
stops it, prints the figures and writes them into BENCHMARKS.md between the
`<!-- serving -->` markers:

    python benchmarks/serving.py [--tracking-uri sqlite:///$PWD/mlflow.db] [--duration 5]
        [--levels 1,4,16,64] [--soak 60] [--workloads review,batch,digit] [--rounds 1]
        [--no-write]

Both servers of a model run at once and take turns level by level (the order swapped
every round), so a machine whose speed drifts affects both alike; each level prints the
ratio of answered requests per second, ours over stock. `--soak 0` skips the soak, the
oversized body and the accuracy check; `--no-write` leaves BENCHMARKS.md alone (quick
checks of one workload or level).

Per server, workload (a single review, a single 28x28 digit, 100 reviews) and concurrency:
answered requests per second, p50/p99 latency of the answered ones, the share of 503s and
any other failure (500, a reset or a client timeout: a hang). Then, on `variants serve`
only: the soak (single reviews from 16 clients for --soak seconds; resident memory after
warm-up and at the end), a 64 MiB body (time to the 413 and memory growth), and the
served accuracy on 1,000 raw test reviews in one request.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import psutil
from mlflow.tracking import MlflowClient
from sections import write_section  # benchmarks/ runs as scripts: its own folder

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
BEGIN, END = "<!-- serving -->", "<!-- /serving -->"
SERVERS = ("variants serve", "mlflow models serve")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def server(kind: str, model: str, tracking_uri: str, log: Path) -> Iterator[tuple[str, int]]:
    """``kind`` serving ``model``'s champion on a free loopback port: its URL and pid."""
    port = free_port()
    if kind == "variants serve":
        args = [str(BIN / "variants"), "serve", "--model", model, "--port", str(port)]
    else:
        mlflow_bin = shutil.which("mlflow", path=str(BIN)) or "mlflow"
        args = [
            mlflow_bin, "models", "serve", "-m", f"models:/{model}@champion",
            "--env-manager", "local", "--host", "127.0.0.1", "--port", str(port),
        ]  # fmt: skip
    # As in an activated environment: mlflow execs uvicorn by name. No bytecode, as the
    # README runs it: a __pycache__ in the model's folder is refused by variants serve.
    path = f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"
    env = os.environ | {"MLFLOW_TRACKING_URI": tracking_uri, "PATH": path}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    with log.open("w") as out:
        proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline:
                try:
                    if httpx.get(f"{url}/ping", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if proc.poll() is not None:
                    raise SystemExit(f"{kind} for {model} exited; see {log}")
                time.sleep(0.5)
            else:
                raise SystemExit(f"{kind} for {model} did not answer in 240 s; see {log}")
            yield url, proc.pid
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def resident_mb(pid: int) -> float:
    """Resident memory of the process and its children (the stock server's workers)."""
    root = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)]) / 2**20


@dataclass
class Load:
    """What N clients got in a fixed time."""

    seconds: float
    latencies_ms: list[float] = field(default_factory=list)  # of the 200s
    statuses: Counter = field(default_factory=Counter)  # status code, or "error"

    @property
    def total(self) -> int:
        return sum(self.statuses.values())

    def share(self, status: int | str) -> float:
        return self.statuses[status] / self.total if self.total else 0.0

    def failures(self) -> int:
        return sum(n for s, n in self.statuses.items() if s not in (200, 503))

    def add(self, other: Load) -> None:
        """Another round of the same level, counted as if it ran on."""
        self.seconds += other.seconds
        self.latencies_ms += other.latencies_ms
        self.statuses += other.statuses

    def rate(self) -> float:
        return len(self.latencies_ms) / self.seconds

    def cells(self) -> list[str]:
        if not self.latencies_ms:
            return ["0", "-", "-", f"{self.share(503):.0%}", str(self.failures())]
        p50, p99 = np.percentile(self.latencies_ms, [50, 99])
        return [f"{len(self.latencies_ms) / self.seconds:.1f}", f"{p50:.1f}", f"{p99:.1f}",
                f"{self.share(503):.0%}", str(self.failures())]  # fmt: skip


async def _drive(url: str, body: dict, clients: int, seconds: float) -> Load:
    """``clients`` clients, each with its own connection (as separate clients would be),
    sending ``body`` (encoded once) for ``seconds``. The load generator shares the cores
    with the server, so it spends as little as it can: one shared pool of N connections
    checked every idle connection at every request (a select() each), which made clients
    waiting out a Retry-After cost the others CPU."""
    load = Load(seconds)
    content = json.dumps(body).encode()
    headers = {"content-type": "application/json"}
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    async with contextlib.AsyncExitStack() as stack:
        https = [
            await stack.enter_async_context(
                httpx.AsyncClient(base_url=url, timeout=30, limits=limits)
            )
            for _ in range(clients)
        ]
        end = time.monotonic() + seconds

        async def client(http: httpx.AsyncClient) -> None:
            while time.monotonic() < end:
                started = time.perf_counter()
                try:
                    answer = await http.post("/invocations", content=content, headers=headers)
                    status: int | str = answer.status_code
                except httpx.HTTPError:
                    status = "error"
                if status == 200:
                    load.latencies_ms.append((time.perf_counter() - started) * 1000)
                elif status == 503:  # a client that honours the refusal: Retry-After seconds
                    wait = float(answer.headers.get("retry-after", 1))
                    await asyncio.sleep(min(wait, max(end - time.monotonic(), 0)))
                load.statuses[status] += 1

        await asyncio.gather(*(client(http) for http in https))
    return load


def drive(url: str, body: dict, clients: int, seconds: float) -> Load:
    asyncio.run(_drive(url, body, 1, 1.0))  # warm-up
    return asyncio.run(_drive(url, body, clients, seconds))


def oversized_body(url: str, pid: int, mib: int = 64) -> tuple[float, float]:
    """Seconds until the 413 for a ``mib`` MiB body with its Content-Length sent at full
    speed, and the server's memory growth in MiB."""
    before = resident_mb(pid)
    host, port = url.removeprefix("http://").split(":")
    head = (f"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {mib * 2**20}\r\n\r\n").encode()  # fmt: skip
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        started = time.perf_counter()
        sock.sendall(head)

        def send() -> None:
            chunk = b"x" * 2**20
            try:
                for _ in range(mib):
                    sock.sendall(chunk)
            except OSError:
                pass  # refused and closed: as it should

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        answer = sock.recv(4096)
        seconds = time.perf_counter() - started
    sender.join(timeout=5)
    if not answer.startswith(b"HTTP/1.1 413"):
        raise SystemExit(f"the {mib} MiB body was answered {answer[:40]!r}, not 413")
    return seconds, resident_mb(pid) - before


WORKLOADS = {"review": "single review", "batch": "100 reviews", "digit": "single digit"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracking-uri", default=f"sqlite:///{Path.cwd() / 'mlflow.db'}")
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per level")
    parser.add_argument("--levels", default="1,4,16,64", help="concurrent clients")
    parser.add_argument("--soak", type=float, default=60.0, help="soak seconds (0: none)")
    parser.add_argument(
        "--workloads", default=",".join(WORKLOADS), help=f"some of {','.join(WORKLOADS)}"
    )
    parser.add_argument("--rounds", type=int, default=1, help="turns of both servers per level")
    parser.add_argument("--no-write", action="store_true", help="leave BENCHMARKS.md alone")
    parser.add_argument("--output", type=Path, default=REPO / "BENCHMARKS.md")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from keras_variants.data.preprocessing import png_base64

    levels = [int(n) for n in args.levels.split(",")]
    wanted = {WORKLOADS[name] for name in args.workloads.split(",")}
    client = MlflowClient(args.tracking_uri, registry_uri=args.tracking_uri)
    reviews = pd.read_parquet(args.data_dir / "imdb_reviews.parquet")
    test = reviews[reviews["split"] == "test"].sample(1_000, random_state=0)
    with np.load(args.data_dir / "mnist.npz") as mnist:
        digit = png_base64(mnist["x_test"][0])
    workloads = {
        "imdb-sentiment": {
            "single review": {"inputs": [test["text"].iloc[0]]},
            "100 reviews": {"inputs": test["text"].iloc[:100].tolist()},
        },
        "mnist-classifier": {"single digit": {"inputs": [digit]}},
    }
    logs = Path.cwd() / "serving-benchmark-logs"
    logs.mkdir(exist_ok=True)
    table: dict[tuple[str, int], dict[str, Load]] = {}
    extra: list[tuple[str, str, str]] = []
    for model, all_forms in workloads.items():
        forms = {form: body for form, body in all_forms.items() if form in wanted}
        if not forms:
            continue
        with contextlib.ExitStack() as stack:
            urls = {
                kind: stack.enter_context(
                    server(kind, model, args.tracking_uri, logs / f"{kind.split()[0]}-{model}.log")
                )
                for kind in SERVERS
            }
            for form, body in forms.items():
                for clients in levels:
                    loads = table.setdefault((form, clients), {})
                    for turn in range(args.rounds):
                        order = SERVERS if turn % 2 == 0 else SERVERS[::-1]
                        for kind in order:
                            load = drive(urls[kind][0], body, clients, args.duration)
                            print(kind, form, clients, load.cells(), flush=True)
                            loads.setdefault(kind, Load(0.0)).add(load)
                    print(f"{form}, {clients} clients: ours/stock {ratio(loads)}", flush=True)
            if model == "imdb-sentiment" and args.soak > 0:
                extra += extras(*urls["variants serve"], test, args.soak, client)
    lines = report(table, extra, levels, args)
    print("\n".join(lines))
    if not args.no_write:
        write_section(args.output, BEGIN, END, "\n".join(lines))


def extras(
    url: str, pid: int, test: pd.DataFrame, soak: float, client: MlflowClient
) -> list[tuple[str, str, str]]:
    """The soak, the oversized body and the served accuracy, on `variants serve`."""
    single = {"inputs": [test["text"].iloc[0]]}
    drive(url, single, 16, 3.0)  # warm: pools and caches at their working size
    before = resident_mb(pid)
    soaked = drive(url, single, 16, soak)
    after = resident_mb(pid)
    seconds, growth = oversized_body(url, pid)
    started = time.perf_counter()
    answers = httpx.post(f"{url}/invocations", json={"inputs": test["text"].tolist()},
                         timeout=120).json()["predictions"]  # fmt: skip
    batch_s = time.perf_counter() - started
    predicted = np.array([a["label"] == "positive" for a in answers])
    accuracy = float((predicted == test["label"].to_numpy().astype(bool)).mean())
    champion = client.get_model_version_by_alias("imdb-sentiment", "champion")
    logged = float(client.get_run(champion.run_id).data.metrics["test/accuracy"])
    return [
        (f"soak: single reviews, 16 clients, {soak:g} s: resident memory",
         f"{before:.0f} -> {after:.0f} MiB ({(after - before) / before:+.1%}); "
         f"{soaked.total:,} requests, {soaked.share(503):.0%} 503, {soaked.failures()} other "
         "failures", "growth < 10%, no 500, no hang"),
        ("64 MiB body with its Content-Length: time to the 413, memory growth",
         f"{seconds:.3f} s, {growth:+.1f} MiB", "<= 1 s, < 32 MiB"),
        ("1,000 reviews in one request, s", f"{batch_s:.3f}", "<= 1 s"),
        ("served accuracy on those 1,000 texts vs logged test accuracy",
         f"{accuracy:.4f} vs {logged:.4f} ({champion.tags.get('variant')} "
         f"v{champion.version})", "within 0.01"),
    ]  # fmt: skip


def ratio(loads: dict[str, Load]) -> str:
    ours, stock = (loads[kind].rate() for kind in SERVERS)
    return f"{ours / stock:.2f}" if stock else "-"


def report(
    table: dict[tuple[str, int], dict[str, Load]],
    extra: list[tuple[str, str, str]],
    levels: list[int],
    args: argparse.Namespace,
) -> list[str]:
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    header = ["workload", "clients"] + [
        f"{name} {kind.split()[0]}" for kind in SERVERS
        for name in ("req/s", "p50 ms", "p99 ms", "503", "failed")
    ] + ["req/s ours/stock"]  # fmt: skip
    rows = [
        "| " + " | ".join([form, str(clients), *(c for kind in SERVERS
                                                  for c in loads[kind].cells()),
                           ratio(loads)]) + " |"
        for (form, clients), loads in table.items()
    ]  # fmt: skip
    return [
        "## Serving",
        "",
        f"Measured {stamp} on {os.cpu_count()} cores, {platform.machine()}, Python "
        f"{platform.python_version()} by `python benchmarks/serving.py --duration "
        f"{args.duration:g} --levels {args.levels} --soak {args.soak:g} --rounds {args.rounds}`: "
        "the champions behind "
        "`variants serve` (defaults: 16 MiB, as many at once as cores and as many waiting, "
        "cost 10,000, 10 s) and behind `mlflow models serve --env-manager local` (its "
        "defaults), each driven by N httpx clients (one connection each, the body encoded "
        f"once) on the same machine for {args.duration:g} s per level and round, both "
        "servers running and taking turns. req/s counts "
        "answered (200) requests; p50/p99 are their latencies; 503 is the share of requests "
        "refused for load (a refused client waits the Retry-After the server sends, as a "
        "well-behaved client does); failed counts anything else (500, reset, 30 s client "
        "timeout).",
        "",
        "| " + " | ".join(header) + " |",
        "| " + " | ".join("---" for _ in header) + " |",
        *rows,
        "",
        "| measure (`variants serve`) | value | target |",
        "| --- | --- | --- |",
        *(f"| {a} | {b} | {c} |" for a, b, c in extra),
    ]


if __name__ == "__main__":
    main()
