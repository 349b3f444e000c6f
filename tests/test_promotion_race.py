"""Promotion is exclusive across machines: two gates racing to promote on one MLflow server,
each as it would run on a machine of its own (its own tracking URI spelling, its own lock
folder), take turns through the Prefect server they share, and the better version ends up
champion with a consistent story on every version."""

from __future__ import annotations

import contextlib
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from keras_variants.config.pipeline import build_config
from keras_variants.config.variants import VARIANTS
from keras_variants.data.datasets import IMDB_WORD_INDEX_FILE, load_dataset, split_rows
from keras_variants.monitoring.stored import store_profile
from keras_variants.registry.gate_memo import remember
from keras_variants.registry.served_accuracy import ServedAccuracy, gate_inputs
from keras_variants.registry.versions import REGISTERED_MODELS, files_record
from keras_variants.tracking.locks import promotion_lock
from tests.helpers import BIN, Processes, free_port, process, wait_for

NAME = REGISTERED_MODELS["imdb"]
ALIAS_PATH = "/api/2.0/mlflow/registered-models/alias"
HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-length", "host",
               "content-encoding"}  # fmt: skip


class HeldSwitch:
    """An HTTP proxy in front of the MLflow server that holds the first alias switch it is
    sent until a second one arrives (or ``hold`` seconds pass): two gates that are not kept
    apart switch aliases at once, for sure, whatever their timing."""

    def __init__(self, upstream: str, hold: float) -> None:
        self.upstream, self.hold = upstream, hold
        self.partner = threading.Event()
        self.switches = 0
        self.count_lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]

    def wait_for_partner(self) -> None:
        with self.count_lock:
            self.switches += 1
            first = self.switches == 1
        if first:
            self.partner.wait(self.hold)
        else:
            self.partner.set()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self
        upstream = httpx.Client(base_url=self.upstream, timeout=120)

        class Forward(BaseHTTPRequestHandler):
            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                if self.command == "POST" and self.path.startswith(ALIAS_PATH):
                    proxy.wait_for_partner()
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_HEADERS}
                answer = upstream.request(self.command, self.path, content=body, headers=headers)
                self.send_response(answer.status_code)
                for key, value in answer.headers.items():
                    if key.lower() not in HOP_HEADERS:
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _forward

            def log_message(self, *args) -> None:
                pass

        return Forward

    @contextlib.contextmanager
    def running(self) -> Iterator[HeldSwitch]:
        thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.server.shutdown()
            self.server.server_close()


def _register(client: MlflowClient, experiment: str, folder: Path) -> str:
    """``folder`` logged to a new run through the server and registered from there with its
    file hashes, and given a (stand-in) reference profile: a monitored version."""
    run = client.create_run(experiment)
    client.log_artifacts(run.info.run_id, str(folder), "model")
    source = f"{run.info.artifact_uri}/model"
    made = client.create_model_version(NAME, source, run.info.run_id,
                                       tags=files_record(client, source))  # fmt: skip
    store_profile(client, NAME, str(made.version), b"a stand-in profile", {})
    client.set_terminated(run.info.run_id)
    return str(made.version)


def test_two_gates_on_two_machines_end_with_one_champion_the_better_one(
    prefect_server, processes: Processes, data_slices: Path, tmp_path: Path
) -> None:
    """The champion (test accuracy 0.6) is challenged at once by v2 (0.7) through
    http://localhost:PORT and v3 (0.8) through http://127.0.0.1:PORT of one MLflow server,
    each gate with a lock folder of its own as on two machines; every alias switch is held
    until the other gate switches too, or 25 s. Taking turns, the outcome is one of two,
    each consistent: v2 then v3 promoted (v3 replacing v2), or v3 promoted and v2 rejected
    against it. Without turns both would replace v1."""
    from prefect.settings import get_current_settings

    from keras_variants.model.builders import build_model
    from keras_variants.serving import saving

    port = free_port()
    server = f"http://127.0.0.1:{port}"
    args = [
        str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
        "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
        "--artifacts-destination", str(tmp_path / "server-artifacts"), "--workers", "1",
    ]  # fmt: skip
    with process(args, processes.env(), tmp_path, tmp_path / "mlflow.log"):
        wait_for(lambda: httpx.get(f"{server}/health").status_code == 200, 120, "mlflow server")
        client = MlflowClient(server, registry_uri=server)
        client.create_registered_model(NAME)
        experiment = client.create_experiment("imdb")
        folder = tmp_path / "model"
        variant = VARIANTS["imdb_dense"]
        saving.save_model(folder, variant, build_model(variant, seed=1), "A fine film.",
                          data_slices / IMDB_WORD_INDEX_FILE, saving.requirements())  # fmt: skip
        versions = [_register(client, experiment, folder) for _ in range(3)]
        # The gate's remembered answers (sealed to each version's files and to the scorer
        # the gates build from the same data, profile and seed): accuracies 0.6, 0.7, 0.8.
        data = load_dataset("imdb", data_slices)
        profile = build_config(profile="smoke", data_dir=data_slices, workdir=tmp_path).profile
        scorer = ServedAccuracy(gate_inputs(data, split_rows(data, profile, 0)["test"]))
        for version, right in zip(versions, (300, 350, 400), strict=True):
            remember(client, NAME, version, scorer.key, np.arange(500) < right)
        worst, second, best = versions
        client.set_registered_model_alias(NAME, "champion", worst)

        with HeldSwitch(server, hold=25).running() as proxy:
            promote = ["promote", "--model", NAME, "--profile", "smoke", "--data-dir",
                       str(data_slices), "--significance", "1"]  # fmt: skip
            gates = []
            for machine, host, version in (("a", "localhost", second), ("b", "127.0.0.1", best)):
                env = processes.env(
                    tmp_path / machine,
                    PREFECT_API_URL=get_current_settings().api.url,
                    XDG_RUNTIME_DIR=str(_private(tmp_path / machine)),  # its own lock files
                    MLFLOW_HTTP_REQUEST_TIMEOUT="120",  # a held switch is not a dead server
                )
                uri = f"http://{host}:{proxy.port}"
                command = [str(BIN / "variants"), *promote, "--version", version,
                           "--tracking-uri", uri]  # fmt: skip
                pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
                gates.append(processes.start(command, env=env, cwd=tmp_path, **pipes))
            finished = [(*gate.communicate(timeout=600), gate.returncode) for gate in gates]

        champion = client.get_model_version_by_alias(NAME, "champion")
        previous = client.get_model_version_by_alias(NAME, "previous")
        told = "\n".join(out + err for out, err, _ in finished)
        assert champion.version == best, told
        assert f"champion v{previous.version} " in champion.tags["promotion.reason"], told
        second_decision = client.get_model_version(NAME, second).tags["promotion.decision"]
        codes = [code for _, _, code in finished]
        if previous.version == second:  # v2 went first, then v3 replaced it
            assert (second_decision, codes) == ("promoted", [0, 0]), told
        else:  # v3 went first; v2, worse than the new champion, was rejected (exit 3)
            assert previous.version == worst, told
            assert (second_decision, codes) == ("rejected", [3, 0]), told
            reason = client.get_model_version(NAME, second).tags["promotion.reason"]
            assert f"champion v{best} " in reason, told


def _private(folder: Path) -> Path:
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    return folder


def test_one_host_one_lock_however_the_server_is_spelled(tmp_path: Path, monkeypatch) -> None:
    """``localhost`` and ``127.0.0.1`` name one server: the second promotion waits."""
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(_private(tmp_path)))
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    held, entered = threading.Event(), threading.Event()

    def first() -> None:
        with promotion_lock("http://localhost:5000", NAME):
            held.set()
            time.sleep(1.5)

    thread = threading.Thread(target=first)
    thread.start()
    assert held.wait(30)
    started = time.monotonic()
    with promotion_lock("http://127.0.0.1:5000", NAME):
        entered.set()
        waited = time.monotonic() - started
    thread.join()
    assert waited > 1.0


@pytest.mark.parametrize("limit", [0, 5])
def test_a_promotion_limit_changed_by_hand_is_one_slot_again(
    prefect_server, limit: int, tmp_path: Path
) -> None:
    """Someone set the promotion's concurrency limit to 0 (it would wait forever) or 5 (no
    turns): the next promotion sets it back to one active slot."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitUpdate

    from keras_variants.tracking.locks import promotion_limit

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with promotion_lock(store, "race-test"):
        pass
    with get_client(sync_client=True) as client:
        name = promotion_limit("race-test")
        client.update_global_concurrency_limit(
            name, GlobalConcurrencyLimitUpdate(limit=limit, active=limit > 0)
        )
        with promotion_lock(store, "race-test"):
            found = client.read_global_concurrency_limit_by_name(name)
            assert (found.limit, found.active, found.active_slots) == (1, True, 1)
