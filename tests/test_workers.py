"""prefect.yaml on a real Prefect server with process workers on one machine: `prefect deploy
--all` puts the deployments and the pool's crash recovery there, and `prefect deployment run
train/scheduled --param profile=smoke ...` starts training runs. Mid-training,

- the worker running one is SIGKILLed: the run, whose output went through the worker, ends
  Crashed within seconds;
- the machine running another is lost (its worker and every process under it SIGKILLed):
  nothing is left to say so, the run's heartbeats stop, and the recovery sets it Crashed.

Each time the run is retried once by a worker that lives and completes: the same flow run,
its model registered once, and no MLflow run left RUNNING."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import psutil
import pytest

from keras_variants.operations import recovery
from tests.helpers import BIN, Processes, free_port, process, stop_group, wait_for

pytestmark = pytest.mark.faults

REPO = Path(__file__).resolve().parents[1]
ENDS = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
# The recovery's silence here: two heartbeats (30 s, Prefect's shortest) rather than the
# three prefect.yaml's step installs, so that the test waits half a minute less.
SILENT_S = 2 * recovery.HEARTBEAT_S


def test_a_run_whose_worker_dies_is_crashed_retried_once_elsewhere_and_completes(
    data_slices: Path, tmp_path: Path, processes: Processes
) -> None:
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = processes.env(
        PREFECT_API_URL=api, VARIANTS_DATA_DIR=str(data_slices), MLFLOW_TRACKING_URI=tracking,
        PREFECT_WORKER_QUERY_SECONDS="2",
    )  # fmt: skip
    prefect = str(BIN / "prefect")
    server = [prefect, "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    workers: dict[str, subprocess.Popen] = {}
    with (
        process(server, env, tmp_path, tmp_path / "server.log"),
        httpx.Client(base_url=api, timeout=10) as http,
    ):
        wait_for(lambda: http.get("/health").status_code == 200, 180, "the Prefect server")
        made = processes.run([prefect, "work-pool", "create", recovery.POOL, "--type",
                              "process"], env=env)  # fmt: skip
        assert made.returncode == 0, made.stdout + made.stderr
        deployed = processes.run([prefect, "--no-prompt", "deploy", "--all"], env=env, cwd=REPO)
        assert deployed.returncode == 0, (deployed.stdout + deployed.stderr)[-3000:]
        names = {d["name"] for d in http.post("/deployments/filter", json={}).json()}
        assert names == {"scheduled", "score-inbox", "guard-champion"}
        automations = {a["name"] for a in http.post("/automations/filter", json={}).json()}
        assert {spec["name"] for spec in recovery.automations()} <= automations
        shorter = "from keras_variants.operations import recovery; recovery.install(silent_s={})"
        reinstalled = processes.run([sys.executable, "-c", shorter.format(SILENT_S)], env=env)
        assert reinstalled.returncode == 0, reinstalled.stderr[-2000:]

        def start_worker(name: str) -> None:
            log = (tmp_path / f"{name}.log").open("w")
            workers[name] = processes.start(
                [prefect, "worker", "start", "--pool", recovery.POOL, "--name", name],
                env=env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
            online = f"/work_pools/{recovery.POOL}/workers/filter"
            wait_for(lambda: name in {w["name"] for w in http.post(online, json={}).json()},
                     180, f"worker {name}")  # fmt: skip

        try:
            start_worker("w1")
            start_worker("w2")
            run = _training_run(processes, env, http, "mnist_dense", tmp_path)
            lost, survivor = _runs_it(http, run, workers)
            os.kill(workers[lost].pid, signal.SIGKILL)  # the worker alone
            _retried_to_completion(http, run, tmp_path, workers)
            assert run["id"] in (tmp_path / f"{survivor}.log").read_text()
            _store_is_whole(tracking, versions=1)

            start_worker("w3")  # two live workers again
            run = _training_run(processes, env, http, "mnist_cnn", tmp_path)
            lost, survivor = _runs_it(http, run, workers)
            _machine_lost(workers[lost])
            states = _retried_to_completion(http, run, tmp_path, workers)
            crashed = next(s for s in states if s["type"] == "CRASHED")
            assert crashed["message"].startswith(f"no heartbeat for {SILENT_S} s"), crashed
            assert run["id"] in (tmp_path / f"{survivor}.log").read_text()
            _store_is_whole(tracking, versions=2, swept=True)
            # One flow run per request: a retry is the same run, not a second one.
            assert len(_runs_by_hand(http)) == 2
        finally:  # while the server answers: a worker without it takes 30 s to stop
            for worker in workers.values():
                if worker.poll() is None:
                    stop_group(worker)


def _training_run(
    processes: Processes, env: dict[str, str], http: httpx.Client, variant: str, tmp_path: Path
) -> dict:
    """A smoke run of ``variant`` started as a user would, once it trains."""
    started = processes.run(
        [str(BIN / "prefect"), "deployment", "run", "train/scheduled", "--param",
         "profile=smoke", "--param", f'variants=["{variant}"]', "--param",
         f"workdir={tmp_path}"], env=env,
    )  # fmt: skip
    assert started.returncode == 0, started.stdout + started.stderr
    run = next(r for r in _runs_by_hand(http) if r["parameters"]["variants"] == [variant])
    assert run["parameters"]["profile"] == "smoke"
    training = {
        "flow_runs": {"id": {"any_": [run["id"]]}},
        "task_runs": {"name": {"like_": "train-"}, "state": {"type": {"any_": ["RUNNING"]}}},
    }
    wait_for(lambda: http.post("/task_runs/filter", json=training).json(), 300, "training")
    return run


def _runs_it(
    http: httpx.Client, run: dict, workers: dict[str, subprocess.Popen]
) -> tuple[str, str]:
    """The worker whose process runs ``run``, and another that lives."""
    infra = wait_for(lambda: http.get(f"/flow_runs/{run['id']}").json()["infrastructure_pid"],
                     60, "the run's process")  # fmt: skip
    parent = psutil.Process(int(str(infra).rsplit(":", 1)[-1])).parent()  # "host:pid"
    assert parent is not None
    lost = next(name for name, proc in workers.items() if proc.pid == parent.pid)
    survivor = next(n for n, proc in workers.items() if n != lost and proc.poll() is None)
    return lost, survivor


def _machine_lost(worker: subprocess.Popen) -> None:
    """SIGKILL the worker and everything under it (its flow run, the run's lanes), as a
    power cut would: nothing of it gets to say goodbye."""
    root = psutil.Process(worker.pid)
    for proc in [*root.children(recursive=True), root]:
        with contextlib.suppress(psutil.NoSuchProcess):  # it ended with its parent
            proc.send_signal(signal.SIGKILL)


def _retried_to_completion(
    http: httpx.Client, run: dict, tmp_path: Path, workers: dict[str, subprocess.Popen]
) -> list[dict]:
    """Wait for ``run``'s second attempt to end; its states, checked: Crashed, scheduled
    again (AwaitingRetry), Completed, two attempts."""

    def ended() -> dict | None:
        found = http.get(f"/flow_runs/{run['id']}").json()
        return found if found["state_type"] in ENDS and found["run_count"] >= 2 else None

    try:
        final = wait_for(ended, 600, "the retried run to end")
    except AssertionError:
        logs = {name: (tmp_path / f"{name}.log").read_text()[-2000:] for name in workers}
        raise AssertionError(json.dumps(logs, indent=1)) from None
    states = http.get("/flow_run_states/", params={"flow_run_id": run["id"]}).json()
    kinds = [(s["type"], s["name"]) for s in states]
    assert final["state_type"] == "COMPLETED", kinds
    assert final["run_count"] == 2
    crashed = kinds.index(("CRASHED", "Crashed"))
    assert kinds[crashed + 1] == ("SCHEDULED", "AwaitingRetry"), kinds
    assert kinds.count(("CRASHED", "Crashed")) == 1, kinds
    return states


def _runs_by_hand(http: httpx.Client) -> list[dict]:
    """The training deployment's flow runs but those its cron has scheduled ahead."""
    runs = http.post("/flow_runs/filter", json={
        "deployments": {"name": {"any_": ["scheduled"]}},
        "flow_runs": {"parent_task_run_id": {"is_null_": True}},
    }).json()  # fmt: skip
    return [r for r in runs if not r["auto_scheduled"]]


def _store_is_whole(tracking: str, versions: int, swept: bool = False) -> None:
    """No MLflow run left RUNNING (with ``swept``, the lost attempt's ended FAILED by the
    retry); ``versions`` registered, each once, from a finished run, with its files'
    hashes; the first is the champion."""
    from mlflow.tracking import MlflowClient

    from keras_variants.registry.integrity import FILES_TAG
    from keras_variants.tracking.store import SWEPT_TAG

    client = MlflowClient(tracking, tracking)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    statuses = [r.info.status for r in runs]
    assert "RUNNING" not in statuses, statuses
    if swept:
        ended = [r for r in runs if SWEPT_TAG in r.data.tags]
        assert ended and all(r.info.status == "FAILED" for r in ended)
    found = client.search_model_versions("name = 'mnist-classifier'")
    assert len(found) == versions == len({v.run_id for v in found}), found
    for version in found:
        assert FILES_TAG in version.tags
        assert client.get_run(version.run_id).info.status == "FINISHED"
    assert client.get_model_version_by_alias("mnist-classifier", "champion").version
