"""The guarded champion against real servers: an MLflow tracking server sending its registry
webhooks, a Prefect server, ``variants schedule --guard-champion`` (the receiver and the
guard's deployment) and a ``--notify`` receiver. ``champion`` is set through MLflow's REST
API, as the UI sets it: a worse version is reverted (and the notify URL told why), a better
one confirmed, with 'previous' on the champion it replaced."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import httpx

from tests.helpers import BIN, Processes, free_port, process, wait_for
from tests.test_guard import CANARY, Store, guard_store, signed
from tests.test_schedule import receiver

__all__ = ["guard_store"]  # the fixture, shared with tests/test_guard.py
SECRET = "guard-secret-for-the-server-test-42"
MODEL = "imdb-sentiment"


def test_a_champion_set_through_mlflows_api_is_reverted_when_worse_and_kept_when_better(
    guard_store: Store, data_slices: Path, tmp_path: Path, processes: Processes
) -> None:
    store = guard_store
    from cryptography.fernet import Fernet

    from keras_variants.registry import gate

    first = store.register(seed=1, profiled=False)
    assert gate.gate(store.client, store.config, store.data, version=first).promoted
    worse, better = store.register(seed=2), store.register(seed=4, trained=True)

    mlflow_port, prefect_port, guard_port = free_port(), free_port(), free_port()
    mlflow_url, api = f"http://127.0.0.1:{mlflow_port}", f"http://127.0.0.1:{prefect_port}/api"
    guard_url = f"http://127.0.0.1:{guard_port}/mlflow-webhook"
    mlflow_env = processes.env(
        MLFLOW_WEBHOOK_ALLOWED_SCHEMES="http,https",  # the receiver is on loopback, plain
        MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS="true",
        MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY=Fernet.generate_key().decode(),
    )
    mlflow_server = [
        shutil.which("mlflow", path=str(BIN)) or "mlflow", "server", "--host", "127.0.0.1",
        "--port", str(mlflow_port), "--backend-store-uri", store.config.tracking_uri,
        "--workers", "1",
    ]  # fmt: skip
    prefect_server = [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1",
                      "--port", str(prefect_port)]  # fmt: skip
    env = processes.env(
        PREFECT_API_URL=api, MLFLOW_TRACKING_URI=mlflow_url, VARIANTS_WEBHOOK_SECRET=SECRET,
        PREFECT_RUNNER_POLL_FREQUENCY="2",
    )  # fmt: skip
    schedule_log = tmp_path / "schedule.log"
    with (
        receiver() as (notify_url, received),
        process(mlflow_server, mlflow_env, tmp_path, tmp_path / "mlflow.log"),
        process(prefect_server, env, tmp_path, tmp_path / "prefect.log"),
        httpx.Client(base_url=f"{mlflow_url}/api/2.0/mlflow", timeout=30) as mlflow_api,
    ):
        wait_for(lambda: httpx.get(f"{mlflow_url}/health").status_code == 200, 180, "mlflow")
        wait_for(lambda: httpx.get(f"{api}/health").status_code == 200, 180, "prefect")
        schedule = [
            str(BIN / "variants"), "schedule", "--guard-champion", guard_url,
            "--notify", notify_url, "--profile", "smoke", "--data-dir", str(data_slices),
        ]  # fmt: skip
        with schedule_log.open("w") as out:
            proc = processes.start(schedule, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_for(lambda: "Prefect UI:" in schedule_log.read_text(), 240, "the schedule")
            hooks = mlflow_api.get("/webhooks").json()["webhooks"]
            assert [h["name"] for h in hooks] == ["variants-guard"], hooks
            # A hostile client at the receiver: refused in a few words, nothing echoed.
            forged = httpx.post(guard_url, content=CANARY.encode(), headers=signed(
                CANARY.encode(), secret="not-the-secret-0123456789"))  # fmt: skip
            assert forged.status_code == 401 and CANARY not in forged.text

            def set_by_hand(version: str) -> None:
                answer = mlflow_api.post(
                    "/registered-models/alias",
                    json={"name": MODEL, "alias": "champion", "version": version},
                )
                assert answer.status_code == 200, answer.text

            set_by_hand(worse)
            wait_for(
                lambda: store.tags(worse).get("promotion.decision") == "reverted", 600,
                "the worse version reverted",
            )  # fmt: skip
            assert store.alias() == first
            wait_for(lambda: any(m["event"] == "reverted" for m in received), 120, "notify")
            (message,) = [m for m in received if m["event"] == "reverted"]
            assert (message["model"], message["version"]) == (MODEL, worse)
            assert f"v{first} restored as champion" in message["reason"]

            set_by_hand(better)
            wait_for(
                lambda: store.tags(better).get("promotion.decision") == "promoted by hand", 600,
                "the better version confirmed",
            )  # fmt: skip
            assert (store.alias(), store.alias("previous")) == (better, first)
            assert "better beyond chance" in store.tags(better)["promotion.reason"]
            wait_for(lambda: any(m["event"] == "promoted" for m in received), 120, "notify")
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=60)
    log = schedule_log.read_text()
    assert "Traceback" not in log and CANARY not in log
