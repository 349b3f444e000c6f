"""Serving benchmark: latency and throughput of the registered champions behind the stock
`mlflow models serve`, and the served IMDb champion's accuracy on raw test reviews.

Needs a store with champions (after `variants run --data-dir ../shared/data`). Starts one
scoring server per champion on a loopback port, sends a bounded number of requests, stops
the servers, prints the figures and writes them into BENCHMARKS.md between the
`<!-- serving -->` markers:

    python benchmarks/serving.py [--tracking-uri sqlite:///$PWD/mlflow.db] [--requests 200]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
from mlflow.tracking import MlflowClient

REPO = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- serving -->", "<!-- /serving -->"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def scoring_server(model: str, tracking_uri: str, log: Path):
    """`mlflow models serve` for ``model``'s champion on a free loopback port; its URL."""
    port = free_port()
    mlflow_bin = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or "mlflow"
    args = [
        mlflow_bin, "models", "serve", "-m", f"models:/{model}@champion",
        "--env-manager", "local", "--host", "127.0.0.1", "--port", str(port),
    ]  # fmt: skip
    # As in an activated environment: the server execs uvicorn by name.
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    env = os.environ | {"MLFLOW_TRACKING_URI": tracking_uri, "PATH": path}
    with log.open("w") as out:
        server = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT,
                                  start_new_session=True)  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline:
                try:
                    if httpx.get(f"{url}/ping", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if server.poll() is not None:
                    raise SystemExit(f"the server for {model} exited; see {log}")
                time.sleep(0.5)
            else:
                raise SystemExit(f"the server for {model} did not answer in 180 s; see {log}")
            yield url
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)


def latencies(client: httpx.Client, url: str, body: dict, requests: int) -> list[float]:
    """Milliseconds per request, after 10 warm-up requests."""
    for _ in range(10):
        client.post(f"{url}/invocations", json=body).raise_for_status()
    times = []
    for _ in range(requests):
        started = time.perf_counter()
        client.post(f"{url}/invocations", json=body).raise_for_status()
        times.append((time.perf_counter() - started) * 1000)
    return times


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracking-uri", default=f"sqlite:///{Path.cwd() / 'mlflow.db'}")
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--requests", type=int, default=200, help="timed requests per form")
    parser.add_argument("--output", type=Path, default=REPO / "BENCHMARKS.md")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from keras_variants.data.preprocessing import png_base64

    client = MlflowClient(args.tracking_uri, registry_uri=args.tracking_uri)
    reviews = pd.read_parquet(args.data_dir / "imdb_reviews.parquet")
    test = reviews[reviews["split"] == "test"].sample(1_000, random_state=0)
    with np.load(args.data_dir / "mnist.npz") as mnist:
        digit = png_base64(mnist["x_test"][0])
    logs = Path.cwd() / "serving-benchmark-logs"
    logs.mkdir(exist_ok=True)
    rows, notes = [], []
    with httpx.Client(timeout=120) as http:
        with scoring_server("imdb-sentiment", args.tracking_uri, logs / "imdb.log") as url:
            single = {"inputs": [test["text"].iloc[0]]}
            review_ms = latencies(http, url, single, args.requests)
            batch = {"inputs": test["text"].tolist()}
            batch_s, answers = [], None
            for _ in range(5):
                started = time.perf_counter()
                answers = http.post(f"{url}/invocations", json=batch).json()["predictions"]
                batch_s.append(time.perf_counter() - started)
        with scoring_server("mnist-classifier", args.tracking_uri, logs / "mnist.log") as url:
            image_ms = latencies(http, url, {"inputs": [digit]}, args.requests)
    predicted = np.array([a["label"] == "positive" for a in answers])
    served_accuracy = float((predicted == test["label"].to_numpy().astype(bool)).mean())
    champion = client.get_model_version_by_alias("imdb-sentiment", "champion")
    logged = float(client.get_run(champion.run_id).data.metrics["test/accuracy"])
    rows = [
        ("single review, p50 / p99 ms", f"{percentile(review_ms, 50):.1f} / "
         f"{percentile(review_ms, 99):.1f}", "p50 <= 20 ms"),
        ("single 28x28 PNG digit, p50 / p99 ms", f"{percentile(image_ms, 50):.1f} / "
         f"{percentile(image_ms, 99):.1f}", "p50 <= 20 ms"),
        ("1,000 reviews in one request, s (median of 5)", f"{statistics.median(batch_s):.3f}",
         "<= 1 s"),
        ("served accuracy on those 1,000 texts vs logged test accuracy",
         f"{served_accuracy:.4f} vs {logged:.4f} ({champion.tags.get('variant')} "
         f"v{champion.version})", "within 0.01"),
    ]  # fmt: skip
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "## Serving",
        "",
        f"Measured {stamp} on {os.cpu_count()} cores, {platform.machine()}, Python "
        f"{platform.python_version()} by `python benchmarks/serving.py`: the champions behind "
        f"`mlflow models serve --env-manager local`, {args.requests} timed requests per form "
        "after 10 warm-up ones, one client on the same machine.",
        "",
        "| measure | value | target |",
        "| --- | --- | --- |",
        *(f"| {a} | {b} | {c} |" for a, b, c in rows),
        *notes,
    ]
    section = "\n".join(lines)
    print(section)
    previous = args.output.read_text() if args.output.exists() else ""
    if BEGIN in previous and END in previous:
        head, rest = previous.split(BEGIN, 1)
        updated = head + BEGIN + "\n" + section + "\n" + END + rest.split(END, 1)[1]
    else:
        updated = previous.rstrip() + f"\n\n{BEGIN}\n{section}\n{END}\n"
    args.output.write_text(updated)


if __name__ == "__main__":
    main()
