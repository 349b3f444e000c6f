"""``variants schedule`` against a real ``prefect server start`` on a loopback port, with a
real HTTP receiver for ``--notify``: a changed data file starts a training run, a second
change while it runs waits for it (never in parallel), and the receiver gets ``promoted``
then ``failed``; SIGTERM stops the schedule within 10 s."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.conftest import rewrite_npz
from tests.helpers import BIN, free_port, process, subprocess_env, wait_for

pytestmark = pytest.mark.slow


@contextmanager
def receiver() -> Iterator[tuple[str, list[dict]]]:
    """A local HTTP server that keeps every JSON body POSTed to it."""
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            received.append(json.loads(body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    finally:
        server.shutdown()


def _replace(path: Path, **changes: np.ndarray) -> None:
    """Rewrite ``path`` beside itself and move it in whole, as a careful writer would."""
    staged = path.with_name(f".{path.name}")
    staged.write_bytes(path.read_bytes())
    rewrite_npz(staged, **changes)
    os.replace(staged, path)


def _when(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def test_new_data_trains_one_run_at_a_time_and_notifies(broken_dir: Path, tmp_path: Path) -> None:
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = subprocess_env(tmp_path, PREFECT_API_URL=api)
    server_log, schedule_log = tmp_path / "server.log", tmp_path / "schedule.log"
    server = [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    mnist = broken_dir / "mnist.npz"
    with np.load(mnist) as npz:
        x_train, y_train = npz["x_train"], npz["y_train"]
    with (
        receiver() as (url, received),
        process(server, env, tmp_path, server_log),
        httpx.Client(base_url=api, timeout=10) as http,
    ):
        wait_for(lambda: http.get("/health").status_code == 200, 180, "the Prefect server")
        schedule = [
            str(BIN / "variants"), "schedule", "--on-new-data", "--notify", url,
            "--profile", "smoke", "--data-dir", str(broken_dir), "--variants", "mnist_dense",
        ]  # fmt: skip
        with schedule_log.open("w") as out:
            proc = subprocess.Popen(
                schedule, env=env, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        try:
            (deployment,) = wait_for(
                lambda: http.post("/deployments/filter", json={}).json(), 180, "the deployment"
            )
            assert deployment["global_concurrency_limit"]["limit"] == 1
            assert deployment["concurrency_options"]["collision_strategy"] == "ENQUEUE"
            wait_for(lambda: "Prefect UI:" in schedule_log.read_text(), 120, "the watcher")
            automations = {a["name"] for a in http.post("/automations/filter", json={}).json()}
            assert {
                "variants notify: scheduled failed or crashed",
                "variants notify: scheduled promoted",
                "scheduled: data changed",  # the deployment's trigger
            } <= automations
            query = {"flow_runs": {"deployment_id": {"any_": [deployment["id"]]}}}

            def runs() -> list[dict]:
                return http.post("/flow_runs/filter", json=query).json()

            _replace(mnist, x_train=x_train[::-1].copy(), y_train=y_train[::-1].copy())
            (running,) = wait_for(
                lambda: [r for r in runs() if r["state_type"] == "RUNNING"], 120, "a run"
            )
            read = {
                "flow_runs": {"id": {"any_": [running["id"]]}},
                "task_runs": {
                    "name": {"like_": "ingest-mnist"},
                    "state": {"type": {"any_": ["COMPLETED"]}},
                },
            }
            wait_for(lambda: http.post("/task_runs/filter", json=read).json(), 180, "data read")
            bad = y_train.copy()
            bad[7] = 10  # fails validation: this run must wait for the first, then fail
            _replace(mnist, y_train=bad)
            ends = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
            first, second = sorted(
                wait_for(
                    lambda: (
                        len(done := [r for r in runs() if r["state_type"] in ends]) == 2 and done
                    ),
                    600,
                    "two runs to end",
                ),
                key=lambda r: r["start_time"],
            )
            assert (first["state_type"], second["state_type"]) == ("COMPLETED", "FAILED")
            assert _when(second["start_time"]) >= _when(first["end_time"])  # never in parallel
            wait_for(lambda: len(received) >= 2, 60, "two messages")
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                code = proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                raise AssertionError("SIGTERM did not stop the schedule within 10 s") from None
    log = schedule_log.read_text()
    assert "data changed: mnist.npz; training run requested" in log, log[-2000:]
    assert code in (0, -signal.SIGTERM, 128 + signal.SIGTERM), code
    promoted, failed = sorted(received, key=lambda m: m["event"] != "promoted")
    assert promoted["event"] == "promoted"
    assert (promoted["model"], promoted["version"]) == ("mnist-classifier", "1")
    assert promoted["flow_run"] == first["name"]
    assert promoted["mlflow_url"].endswith("/#/models/mnist-classifier/versions/1")
    assert failed["event"] == "failed"
    assert failed["flow_run"] == second["name"]
    assert "labels are digits 0-9" in failed["reason"]
    assert failed["prefect_url"] == f"{api.removesuffix('/api')}/runs/flow-run/{second['id']}"
