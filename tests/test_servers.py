"""Real servers on loopback ports: a scheduled Prefect deployment and the MLflow UI's API."""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

import httpx
import pytest

from tests.helpers import BIN, Processes, free_port, process, wait_for


def _last_error(log: Path) -> str:
    """The server log's last error line (with the line before it), for a failure message."""
    lines = log.read_text(errors="replace").splitlines() if log.is_file() else []
    marks = [i for i, line in enumerate(lines) if "Error" in line or "ERROR" in line]
    if not marks:
        return f"{log.name}: no error logged"
    return f"{log.name}, last error: " + "\n".join(lines[max(marks[-1] - 1, 0) : marks[-1] + 1])


def test_cron_schedule_fires_and_its_run_completes(
    data_slices: Path, tmp_path: Path, processes: Processes
) -> None:
    """The server's scheduler, not the test, creates the run: a cron schedule that comes due
    within a minute yields an auto-scheduled flow run that the served deployment completes."""
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = processes.env(PREFECT_API_URL=api)
    server_log, serve_log = tmp_path / "server.log", tmp_path / "serve.log"
    server = [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    serve = [
        str(BIN / "variants"), "schedule", "--cron", "* * * * *", "--profile", "smoke",
        "--data-dir", str(data_slices), "--variants", "mnist_dense,imdb_reduced",
    ]  # fmt: skip
    with (
        process(server, env, tmp_path, server_log),
        httpx.Client(base_url=api, timeout=10) as http,
    ):
        wait_for(lambda: http.get("/health").status_code == 200, 180, "the Prefect server")
        with process(serve, env, tmp_path, serve_log):
            deployments = wait_for(
                lambda: http.post("/deployments/filter", json={}).json(), 180, "the deployment"
            )
            (deployment,) = deployments
            assert deployment["name"] == "scheduled"
            assert deployment["schedules"][0]["schedule"]["cron"] == "* * * * *"
            query = {"flow_runs": {"deployment_id": {"any_": [deployment["id"]]}}}
            ends = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}

            def scheduled_runs() -> list[dict]:
                runs = http.post("/flow_runs/filter", json=query).json()
                return [run for run in runs if run["auto_scheduled"]]

            try:
                wait_for(scheduled_runs, 150, "a run created by the scheduler")
            except AssertionError as error:
                raise AssertionError(f"{error}\n{_last_error(server_log)}") from None
            # The first one starts at the next full minute: up to 60 s, then a smoke run.
            (run, *_) = wait_for(
                lambda: [run for run in scheduled_runs() if run["state_type"] in ends],
                400,
                "a scheduled run to end",
            )
            assert run["state_type"] == "COMPLETED", serve_log.read_text()[-3000:]
    assert _last_error(server_log) == "server.log: no error logged", _last_error(server_log)
    assert (tmp_path / "mlflow.db").is_file()
    assert (tmp_path / "reports" / "latest.html").is_file()


def test_mlflow_server_shows_runs_metrics_and_aliases(
    smoke_run, smoke_config, tmp_path, processes
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    mlflow_bin = shutil.which("mlflow", path=str(BIN)) or "mlflow"
    args = [
        mlflow_bin, "server", "--host", "127.0.0.1", "--port", str(port),
        "--backend-store-uri", smoke_config.tracking_uri, "--workers", "1",
    ]  # fmt: skip
    with (
        process(args, processes.env(), tmp_path, tmp_path / "mlflow.log"),
        httpx.Client(base_url=f"{url}/api/2.0/mlflow", timeout=10) as http,
    ):
        wait_for(lambda: httpx.get(f"{url}/health").status_code == 200, 120, "mlflow server")
        experiments = http.post("/experiments/search", json={"max_results": 10}).json()
        ids = {e["name"]: e["experiment_id"] for e in experiments["experiments"]}
        assert {"mnist", "imdb"} <= set(ids)
        run_id = smoke_run.variants["mnist_cnn"].run_id
        run = http.get("/runs/get", params={"run_id": run_id}).json()["run"]
        metrics = {m["key"]: m["value"] for m in run["data"]["metrics"]}
        assert metrics["test/accuracy"] == pytest.approx(
            smoke_run.variants["mnist_cnn"].test_metrics["test/accuracy"]
        )
        history = http.get(
            "/metrics/get-history", params={"run_id": run_id, "metric_key": "val/loss"}
        ).json()["metrics"]
        assert [m["step"] for m in history] == [1, 2]
        alias = http.get(
            "/registered-models/alias", params={"name": "mnist-classifier", "alias": "champion"}
        ).json()
        assert alias["model_version"]["name"] == "mnist-classifier"


def test_temporary_servers_started_at_once_on_a_new_home_all_start(
    tmp_path: Path, processes: Processes
) -> None:
    """Commands started together (two schedules, two users) each start Prefect's temporary
    server on one new Prefect home; each server creates the shared database only once the
    one before it has, so all of them answer (one database created three times at once
    fails with 'duplicate column name')."""
    env = processes.env()
    ports = [free_port() for _ in range(3)]
    with contextlib.ExitStack() as servers:
        for port in ports:
            command = [str(BIN / "python"), "-m", "keras_variants.prefect_server", str(port)]
            servers.enter_context(process(command, env, tmp_path, tmp_path / f"{port}.log"))
        for port in ports:
            log = tmp_path / f"{port}.log"
            wait_for(lambda port=port, log=log: _answers(port) or _failed(log), 120, f"{port}")
            assert not _failed(log), _last_error(log)


def _answers(port: int) -> bool:
    return httpx.get(f"http://127.0.0.1:{port}/api/health").status_code == 200


def _failed(log: Path) -> bool:
    return "Application startup failed" in log.read_text(errors="replace")
