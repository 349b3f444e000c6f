"""Real servers on loopback ports: a scheduled Prefect deployment and the MLflow UI's API."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import pytest

from tests.helpers import BIN, free_port, process, subprocess_env, wait_for

pytestmark = pytest.mark.slow


def test_scheduled_deployment_runs(data_slices: Path, tmp_path: Path) -> None:
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = subprocess_env(tmp_path, PREFECT_API_URL=api)
    server = [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    serve = [
        str(BIN / "variants"), "serve", "--cron", "0 3 * * *", "--profile", "smoke",
        "--data-dir", str(data_slices), "--variants", "mnist_dense,imdb_reduced",
    ]  # fmt: skip
    with (
        process(server, env, tmp_path, tmp_path / "server.log"),
        httpx.Client(base_url=api, timeout=10) as http,
    ):
        wait_for(lambda: http.get("/health").status_code == 200, 180, "the Prefect server")
        with process(serve, env, tmp_path, tmp_path / "serve.log"):
            deployments = wait_for(
                lambda: http.post("/deployments/filter", json={}).json(), 180, "the deployment"
            )
            (deployment,) = deployments
            assert deployment["name"] == "scheduled"
            assert deployment["schedules"][0]["schedule"]["cron"] == "0 3 * * *"
            run = http.post(f"/deployments/{deployment['id']}/create_flow_run", json={}).json()

            def finished() -> str | None:
                state = http.get(f"/flow_runs/{run['id']}").json()["state"]["type"]
                return state if state in {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"} else None

            assert wait_for(finished, 400, "the triggered flow run") == "COMPLETED", (
                tmp_path / "serve.log"
            ).read_text()[-3000:]
    assert (tmp_path / "mlflow.db").is_file()
    assert (tmp_path / "reports" / "latest.html").is_file()


def test_mlflow_server_shows_runs_metrics_and_aliases(smoke_run, smoke_config, tmp_path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    mlflow_bin = shutil.which("mlflow", path=str(BIN)) or "mlflow"
    args = [
        mlflow_bin, "server", "--host", "127.0.0.1", "--port", str(port),
        "--backend-store-uri", smoke_config.tracking_uri, "--workers", "1",
    ]  # fmt: skip
    with (
        process(args, subprocess_env(tmp_path), tmp_path, tmp_path / "mlflow.log"),
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
