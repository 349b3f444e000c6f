"""Scaling out: variant tasks on a real local Dask cluster, tracking on a real MLflow server
(the command against it, with lanes and with Dask)."""

from __future__ import annotations

from pathlib import Path

import httpx
from mlflow.tracking import MlflowClient

from flows.pipeline import run_pipeline
from keras_variants.config.pipeline import build_config
from keras_variants.registry.versions import alias_version, model_path
from keras_variants.serving.saving import load_served
from keras_variants.tracking.store import client_for
from tests.helpers import BIN, Processes, free_port, process, wait_for


def test_smoke_profile_on_a_two_worker_dask_cluster(prefect_server, data_slices, tmp_path):
    config = build_config(
        profile="smoke",
        data_dir=data_slices,
        workdir=tmp_path,
        variants=("mnist_dense", "imdb_reduced", "imdb_dropout"),
        runner="dask",
        max_parallel=2,
    )
    result = run_pipeline(config)
    client = client_for(config)
    assert set(result.variants) == {"mnist_dense", "imdb_reduced", "imdb_dropout"}
    for outcome in result.variants.values():
        run = client.get_run(outcome.run_id)
        assert run.info.status == "FINISHED"
        assert run.data.metrics["test/accuracy"] == outcome.test_metrics["test/accuracy"]
    # The worker processes trained with the same seeds as threads would.
    threads = run_pipeline(config.model_copy(update={"runner": "threads", "promote": False}))
    for name, outcome in threads.variants.items():
        assert outcome.test_metrics == result.variants[name].test_metrics


def test_the_command_prints_no_mlflow_run_links_with_lanes_or_dask(
    data_slices, tmp_path: Path, processes: Processes
):
    """``variants run`` against an MLflow server, with the default lanes and with a local
    Dask cluster (whose worker processes share the command's terminal): the artifacts go
    through the server (none written here), the champion is downloaded from it and loads;
    MLflow's own "View run ... at" and "View experiment at" lines, printed when a run ends,
    stay hidden; the summary's links are the command's own."""
    import subprocess

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = [
        str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
        "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
        "--artifacts-destination", str(tmp_path / "server-artifacts"), "--workers", "1",
    ]  # fmt: skip
    with process(args, processes.env(), tmp_path, tmp_path / "mlflow.log"):
        wait_for(lambda: httpx.get(f"{url}/health").status_code == 200, 120, "mlflow server")
        for runner in ("processes", "dask"):
            done = subprocess.run(
                [
                    str(BIN / "variants"), "run", "--profile", "smoke", "--data-dir",
                    str(data_slices), "--variants", "imdb_reduced", "--tracking-uri", url,
                    "--runner", runner, "--force",
                ],
                env=processes.env(), cwd=tmp_path, capture_output=True, text=True,
                timeout=600,
            )  # fmt: skip
            printed = done.stdout + done.stderr
            assert done.returncode == 0, printed[-3000:]
            assert "runs done in" in printed  # the run's own lines are there
            assert "View run" not in printed and "View experiment" not in printed, runner
        client = MlflowClient(url, registry_uri=url)
        experiments = [e.experiment_id for e in client.search_experiments()]
        runs = client.search_runs(experiments, "tags.role = 'variant'")
        assert len(runs) == 2 and {r.info.status for r in runs} == {"FINISHED"}
        for run in runs:
            assert run.info.artifact_uri.startswith("mlflow-artifacts:")
            artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
            assert "confusion_matrix.json" in artifacts
        assert (tmp_path / "server-artifacts").is_dir() and not (tmp_path / "mlruns").exists()
        champion = alias_version(client, "imdb-sentiment", "champion")
        model = load_served(model_path(client, "imdb-sentiment", champion))  # downloaded
        assert model.metadata.signature is not None
