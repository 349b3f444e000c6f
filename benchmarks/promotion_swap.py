"""Promotion under load: `variants serve` following `champion` while clients keep it busy,
and the alias moves to another version halfway through.

Builds a store of its own in a temporary folder: two versions of one registered model, each
a real served model of the variant's real size (untrained weights: the cost of loading and
answering is the trained model's). Starts `variants serve --model M` (following the alias,
looking every --follow-every seconds), runs N closed-loop clients (each sends its next
single input when the last is answered) for --before seconds, moves the alias to v2, and
goes on until --after seconds past the first answer from v2. Prints, per phase (before the
move; from the move to the first answer from v2, while v2 loads beside v1; after), the
requests answered, their p50 / p99 / max latency, and every failure (any status but 200, a
reset, a client timeout), and the seconds from the move to the first answer from v2:

    python benchmarks/promotion_swap.py [--variant imdb_dense] [--clients 8] [--before 10]
        [--after 10] [--follow-every 1] [--data-dir ../shared/data]

The machine's load counts: the figures are only comparable on one machine at one time.
"""

from __future__ import annotations

import argparse
import base64
import io
import itertools
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
MODELS = {"imdb": "imdb-sentiment", "mnist": "mnist-classifier"}


@dataclass(frozen=True)
class Answer:
    started: float
    ended: float
    status: int | str  # "error": a reset or a client timeout
    version: str


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def build_store(folder: Path, variant_name: str, data_dir: Path) -> tuple[str, str, str]:
    """A store with two versions of the variant's registered model, v1 the champion: its
    URI, the model's name and one input it answers."""
    from mlflow.tracking import MlflowClient

    from keras_variants.config.variants import VARIANTS
    from keras_variants.data.datasets import IMDB_WORD_INDEX_FILE
    from keras_variants.model.builders import build_model
    from keras_variants.registry.versions import files_record
    from keras_variants.serving import saving

    variant = VARIANTS[variant_name]
    model = MODELS[variant.dataset]
    if variant.dataset == "imdb":
        example, word_index = "A fine film.", data_dir / IMDB_WORD_INDEX_FILE
    else:
        from PIL import Image

        buffer = io.BytesIO()
        with np.load(data_dir / "mnist.npz") as mnist:
            Image.fromarray(mnist["x_test"][0]).save(buffer, format="PNG")
        example, word_index = base64.b64encode(buffer.getvalue()).decode(), None
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    client = MlflowClient(uri, uri)
    client.create_registered_model(model)
    for seed in (1, 2):
        path = folder / f"v{seed}"
        saving.save_model(path, variant, build_model(variant, seed=seed), example, word_index,
                          saving.requirements())  # fmt: skip
        source = path.as_uri()
        client.create_model_version(model, source, tags=files_record(client, source))
    client.set_registered_model_alias(model, "champion", "1")
    return uri, model, example


def drive(url: str, example: str, stop: threading.Event, answers: list[Answer]) -> None:
    """One closed-loop client until ``stop``."""
    with httpx.Client(base_url=url, timeout=60) as http:
        while not stop.is_set():
            started = time.monotonic()
            try:
                answer = http.post("/invocations", json={"inputs": [example]})
                status: int | str = answer.status_code
                version = answer.headers.get("x-model-version", "")
            except httpx.HTTPError:
                status, version = "error", ""
            answers.append(Answer(started, time.monotonic(), status, version))


def phase(name: str, answers: list[Answer]) -> str:
    latencies = np.array([(a.ended - a.started) * 1000 for a in answers if a.status == 200])
    failed = [a.status for a in answers if a.status != 200]
    figures = (
        f"{np.percentile(latencies, 50):7.1f} {np.percentile(latencies, 99):7.1f} "
        f"{latencies.max():7.1f}"
        if latencies.size
        else "      -       -       -"
    )
    versions = ",".join(sorted({a.version for a in answers if a.version}))
    return f"| {name:<24} | {len(answers):6d} | {figures} | {len(failed):4d} | v{versions} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", default="imdb_dense")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--before", type=float, default=10.0)
    parser.add_argument("--after", type=float, default=10.0)
    parser.add_argument("--follow-every", type=float, default=1.0)
    parser.add_argument(
        "--data-dir", type=Path,
        default=Path(os.environ.get("VARIANTS_DATA_DIR", REPO.parent / "shared" / "data")),
    )  # fmt: skip
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="promotion-swap-") as tmp:
        folder = Path(tmp)
        uri, model, example = build_store(folder, args.variant, args.data_dir)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        log = folder / "serve.log"
        command = [
            str(BIN / "variants"), "serve", "--model", model, "--port", str(port),
            "--follow-every", str(args.follow_every), "--max-concurrent", "2",
            "--max-queue", str(args.clients), "--timeout", "30",
        ]  # fmt: skip
        env = os.environ | {"MLFLOW_TRACKING_URI": uri, "PATH": f"{BIN}:{os.environ['PATH']}"}
        with log.open("w") as out:
            proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)  # fmt: skip
        try:
            run(url, uri, model, example, args, proc, log)
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)


def run(url, uri, model, example, args, proc, log) -> None:
    from mlflow.tracking import MlflowClient

    deadline = time.monotonic() + 240
    while True:
        try:
            if httpx.get(f"{url}/ping", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"variants serve did not start: {log.read_text()[-1500:]}")
        time.sleep(0.5)
    stop = threading.Event()
    per_client: list[list[Answer]] = [[] for _ in range(args.clients)]
    threads = [threading.Thread(target=drive, args=(url, example, stop, answers))
               for answers in per_client]  # fmt: skip
    for thread in threads:
        thread.start()
    time.sleep(args.before)
    moved = time.monotonic()
    MlflowClient(uri, uri).set_registered_model_alias(model, "champion", "2")
    while not any(a.version == "2" for answers in per_client for a in answers):
        if time.monotonic() - moved > 300:
            raise SystemExit(f"no answer from v2 in 300 s: {log.read_text()[-1500:]}")
        time.sleep(0.05)
    first_v2 = min(a.ended for answers in per_client for a in answers if a.version == "2")
    time.sleep(args.after)
    stop.set()
    for thread in threads:
        thread.join()
    answers = sorted((a for answers in per_client for a in answers), key=lambda a: a.started)
    regressed = sum(
        1 for answers in per_client for a, b in itertools.pairwise(answers)
        if a.version == "2" and b.version == "1"
    )  # fmt: skip
    print(
        f"promotion under load: {args.variant}, {args.clients} clients, following every "
        f"{args.follow_every:g} s; {os.cpu_count()} cores, {platform.machine()}, "
        f"Python {platform.python_version()}, load average {os.getloadavg()[0]:.1f}"
    )
    print("| phase                    | answers |  p50 ms  p99 ms  max ms | fail | versions |")
    print("| --- | --- | --- | --- | --- |")
    print(phase("before the move", [a for a in answers if a.started < moved]))
    print(phase("move to first v2 answer", [a for a in answers if moved <= a.started < first_v2]))
    print(phase("after", [a for a in answers if a.started >= first_v2]))
    print(
        f"first answer from v2 {first_v2 - moved:.1f} s after the move; failed requests "
        f"{sum(a.status != 200 for a in answers)} of {len(answers)}; a client answered by v1 "
        f"after v2: {regressed} times"
    )
    for line in log.read_text().splitlines():
        if " follow: " in line:
            print(line)


if __name__ == "__main__":
    main()
