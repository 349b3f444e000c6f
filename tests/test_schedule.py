"""``variants schedule`` against a real ``prefect server start`` on a loopback port, with a
real HTTP receiver for ``--notify``: a changed data file starts a training run, a second
change while it runs waits for it (never in parallel), and the receiver gets ``promoted``
then ``failed``; SIGTERM stops the schedule within 10 s. A Prefect server restarted under a
running schedule is reconnected to, and the next scheduled run completes; one that stays
away ends the schedule with one line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import numpy as np

from tests.conftest import rewrite_npz
from tests.helpers import BIN, Processes, free_port, process, stop_group, wait_for


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


def test_new_data_trains_one_run_at_a_time_and_notifies(
    broken_dir: Path, tmp_path: Path, processes: Processes
) -> None:
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = processes.env(PREFECT_API_URL=api)
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


def test_a_restarted_prefect_server_is_reconnected_and_the_next_scheduled_run_completes(
    data_slices: Path, tmp_path: Path, processes: Processes
) -> None:
    """The Prefect server (SQLite, in the schedule's PREFECT_HOME) stopped with SIGTERM while
    ``variants schedule --cron`` serves, and started again 40 s later on the same port and
    database: longer than Prefect's runner rides out by itself (3 failed polls, ~20-30 s),
    within the schedule's :data:`SERVER_POLL_FAILURES`. The schedule keeps running, prints
    no error or traceback, and a run the scheduler created starts after the restart and
    completes. No run ends otherwise."""
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = processes.env(PREFECT_API_URL=api)
    server = [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    schedule = [
        str(BIN / "variants"), "schedule", "--cron", "* * * * *", "--profile", "smoke",
        "--data-dir", str(data_slices), "--variants", "imdb_reduced",
    ]  # fmt: skip
    log = tmp_path / "schedule.log"
    ends = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
    with httpx.Client(base_url=api, timeout=10) as http, log.open("w") as out:
        with process(server, env, tmp_path, tmp_path / "server-1.log"):
            wait_for(lambda: http.get("/health").status_code == 200, 180, "the Prefect server")
            proc = subprocess.Popen(
                schedule, env=env, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
            try:
                (deployment,) = wait_for(
                    lambda: http.post("/deployments/filter", json={}).json(), 180, "deployment"
                )
                wait_for(lambda: "Prefect UI:" in log.read_text(), 120, "the schedule to serve")
            except BaseException:
                os.killpg(proc.pid, signal.SIGKILL)
                raise
        stopped = time.monotonic()  # the server has exited (SIGTERM, waited for)
        try:
            time.sleep(40)
            with process(server, env, tmp_path, tmp_path / "server-2.log"):
                wait_for(lambda: http.get("/health").status_code == 200, 180, "the restart")
                restarted = datetime.now(UTC)
                print(f"Prefect server unanswered for {time.monotonic() - stopped:.0f} s")
                query = {"flow_runs": {"deployment_id": {"any_": [deployment["id"]]}}}

                def ended() -> list[dict]:
                    assert proc.poll() is None, log.read_text()[-3000:]  # still serving
                    runs = http.post("/flow_runs/filter", json=query).json()
                    return [r for r in runs if r["state_type"] in ends]

                wait_for(
                    lambda: [
                        r for r in ended()
                        if r["auto_scheduled"] and _when(r["start_time"]) > restarted
                    ],
                    400,
                    "a scheduled run started after the restart to end",
                )  # fmt: skip
                runs = ended()
        finally:
            stop_group(proc)
    assert {r["state_type"] for r in runs} == {"COMPLETED"}, log.read_text()[-3000:]
    printed = log.read_text()
    assert "error:" not in printed and "Traceback" not in printed, printed[-3000:]


def test_a_prefect_server_that_stays_away_ends_the_schedule_with_one_line(
    data_slices: Path, tmp_path: Path, processes: Processes
) -> None:
    """The Prefect server stopped for good under ``variants schedule``: once the runner's
    polls have failed :data:`SERVER_POLL_FAILURES` times in a row, it exits 1 with one line
    naming the server and what to do, and neither Prefect's error dump nor any traceback."""
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    # Polls every 2 s, each failing at once (no client retries): Prefect's settings, which a
    # user may set too; at the defaults (10 s, each poll retried) it takes about 70 s.
    env = processes.env(
        PREFECT_API_URL=api, PREFECT_RUNNER_POLL_FREQUENCY="2", PREFECT_CLIENT_MAX_RETRIES="0"
    )
    server = [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    schedule = [
        str(BIN / "variants"), "schedule", "--cron", "0 0 1 1 *", "--profile", "smoke",
        "--data-dir", str(data_slices), "--variants", "imdb_reduced",
    ]  # fmt: skip
    log = tmp_path / "schedule.log"
    with httpx.Client(base_url=api, timeout=10) as http, log.open("w") as out:
        with process(server, env, tmp_path, tmp_path / "server.log"):
            wait_for(lambda: http.get("/health").status_code == 200, 180, "the Prefect server")
            proc = subprocess.Popen(
                schedule, env=env, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
            try:
                wait_for(lambda: "Prefect UI:" in log.read_text(), 180, "the schedule to serve")
            except BaseException:
                os.killpg(proc.pid, signal.SIGKILL)
                raise
        stopped = time.monotonic()
        try:
            code = proc.wait(timeout=400)
            print(f"schedule ended {time.monotonic() - stopped:.0f} s after its server stopped")
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    printed = log.read_text()
    assert code == 1, printed[-3000:]
    errors = [line for line in printed.splitlines() if line.startswith("error:")]
    assert errors == [
        f"error: lost the Prefect server at PREFECT_API_URL={api}: it stopped answering, so "
        "the schedule stopped. Runs that come due meanwhile wait on the server (state Late) "
        "and run once 'variants schedule' serves again: start one with 'prefect server start "
        f"--host 127.0.0.1 --port {port}', then run this command again"
    ], printed[-3000:]
    assert "Traceback" not in printed and "Failed the last" not in printed, printed[-3000:]


def test_the_server_watch_ends_serving_once_nothing_answers_for_its_time() -> None:
    """The watch beside Prefect's runner (which alone may wait out its client's retries for
    many minutes): any HTTP answer counts, a 401 too; once nothing has answered for its
    time, it sends this process the SIGINT that ends Prefect's serving as Ctrl-C would
    (recorded here instead of raised, so a failure cannot stop the test session)."""
    from keras_variants.operations.runner import watch_server

    class Refusing(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # an answer, though not a 200
            self.send_response(401)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    interrupted: list[float] = []
    previous = signal.signal(signal.SIGINT, lambda *_: interrupted.append(time.monotonic()))
    server = ThreadingHTTPServer(("127.0.0.1", 0), Refusing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    watch = watch_server(f"http://127.0.0.1:{server.server_address[1]}/api", gone_after=8)
    try:
        time.sleep(12)  # answered (401) all along
        assert not interrupted and not watch.gone.is_set()
        server.shutdown()
        server.server_close()
        stopped = time.monotonic()
        while not interrupted and time.monotonic() - stopped < 60:
            time.sleep(0.1)
        assert watch.gone.is_set() and interrupted
        assert 8 < interrupted[0] - stopped < 20
    finally:
        watch.ended.set()  # serving "ended": the watch stops (at most one signal)
        signal.signal(signal.SIGINT, previous)


def test_the_watch_ends_the_command_itself_when_serving_does_not_end() -> None:
    """If serving ignores the watch's SIGINT (Prefect's shutdown waiting on the lost
    server), the watch prints the one error line itself and exits 1 after its grace."""
    api = f"http://127.0.0.1:{free_port()}/api"  # nothing listens there
    script = (
        "import signal, time\n"
        "from keras_variants.operations.runner import watch_server\n"
        "signal.signal(signal.SIGINT, lambda *_: print('interrupted', flush=True))\n"
        f"watch_server({api!r}, gone_after=2, grace=3)\n"
        "time.sleep(120)\n"
    )
    started = time.monotonic()
    done = subprocess.run(
        [str(BIN / "python"), "-c", script], capture_output=True, text=True, timeout=100
    )
    assert done.returncode == 1, done.stderr[-2000:]
    assert time.monotonic() - started < 60
    assert done.stdout.strip() == "interrupted"
    assert done.stderr.startswith(f"error: lost the Prefect server at PREFECT_API_URL={api}:")
    assert len(done.stderr.splitlines()) == 1 and "Traceback" not in done.stderr
