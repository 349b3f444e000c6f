"""The team stack started by ``scripts/stack`` (docs/team-stack.md): a real PostgreSQL,
MLflow and Prefect servers on it with their authentication, a Dask scheduler and two worker
processes talking TLS; the ``variants`` command on it, its security, and faults at its
seams."""

from __future__ import annotations

import os
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from mlflow.tracking import MlflowClient

from keras_variants.registry.versions import REGISTERED_MODELS
from keras_variants.tracking.store import SWEPT_TAG
from tests.conftest import REPO
from tests.helpers import BIN, free_port, subprocess_env, tier

STACK = REPO / "scripts" / "stack"
MODEL = REGISTERED_MODELS["imdb"]


class Answers:
    """httpx's get and post with a generous timeout."""

    def get(self, url: str, **options) -> httpx.Response:
        return httpx.get(url, timeout=120, **options)

    def post(self, url: str, **options) -> httpx.Response:
        return httpx.post(url, timeout=120, **options)


@dataclass
class Stack:
    env: dict[str, str]  # for scripts/stack
    client: dict[str, str]  # what `scripts/stack env` prints: URLs, credentials, address
    root: Path

    def run(self, workdir: Path, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(self.command(workdir, *args), **self.options(workdir), timeout=900)

    def command(self, workdir: Path, *args: str) -> list[str]:
        workdir.mkdir(parents=True, exist_ok=True)
        return [
            str(BIN / "variants"), *args, "--runner", "dask",
            "--dask-address", self.client["VARIANTS_DASK_ADDRESS"],
            "--tracking-uri", self.client["MLFLOW_TRACKING_URI"],
        ]  # fmt: skip

    def options(self, workdir: Path) -> dict:
        env = subprocess_env(workdir, **self.client)
        pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
        return {"env": env, "cwd": workdir, "text": True, **pipes}

    def mlflow(self, monkeypatch: pytest.MonkeyPatch) -> MlflowClient:
        for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
            monkeypatch.setenv(name, self.client[name])
        uri = self.client["MLFLOW_TRACKING_URI"]
        return MlflowClient(uri, registry_uri=uri)

    def dask(self):
        """A Dask client of the stack's scheduler, with the stack's client certificate."""
        return dask_client(self.client)

    def secrets(self) -> list[str]:
        return [
            self.client["MLFLOW_TRACKING_PASSWORD"],
            self.client["PREFECT_API_AUTH_STRING"].partition(":")[2],
        ]


@pytest.fixture(scope="module")
@tier("system", shared=True)
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """The whole stack, started and stopped by the script a user runs, on free ports."""
    root = tmp_path_factory.mktemp("stack")
    env = subprocess_env(
        root,
        STACK_DIR=str(root / "state"),
        STACK_BIN=str(BIN),
        STACK_PG_PORT=str(free_port()),
        STACK_MLFLOW_PORT=str(free_port()),
        STACK_PREFECT_PORT=str(free_port()),
        STACK_DASK_PORT=str(free_port()),
        STACK_WORKER_MEMORY="2GiB",
    )
    started = time.monotonic()
    up = subprocess.run([str(STACK), "up"], env=env, capture_output=True, text=True, timeout=900)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        reporter = request.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"\nscripts/stack up: {time.monotonic() - started:.0f} s")
            reporter.write_line(up.stdout.rstrip())
        printed = subprocess.run(
            [str(STACK), "env"], env=env, capture_output=True, text=True, check=True
        ).stdout
        client = dict(
            line.removeprefix("export ").split("=", 1) for line in printed.splitlines() if line
        )
        yield Stack(env=env, client=client, root=root)
    finally:
        subprocess.run([str(STACK), "down"], env=env, capture_output=True, timeout=300)


def test_the_servers_refuse_requests_without_credentials_and_foreign_hosts(stack: Stack):
    httpx = Answers()  # a password check costs a PBKDF2 hash: slow on a busy machine
    mlflow = stack.client["MLFLOW_TRACKING_URI"]
    search = f"{mlflow}/api/2.0/mlflow/experiments/search?max_results=1"
    auth = ("admin", stack.client["MLFLOW_TRACKING_PASSWORD"])
    assert httpx.get(search).status_code == 401
    assert httpx.get(search, auth=("admin", "wrong")).status_code == 401
    assert httpx.get(search, auth=auth).status_code == 200
    assert httpx.get(search, auth=auth, headers={"Host": "evil.example"}).status_code == 403
    # The artifact proxy serves files under its destination only.
    escape = f"{mlflow}/api/2.0/mlflow-artifacts/artifacts/..%2F..%2F..%2Fetc%2Fpasswd"
    answer = httpx.get(escape, auth=auth)
    assert answer.status_code != 200
    assert "root:" not in answer.text
    prefect = stack.client["PREFECT_API_URL"]
    assert httpx.post(f"{prefect}/flows/filter", json={}).status_code == 401
    user, _, password = stack.client["PREFECT_API_AUTH_STRING"].partition(":")
    assert httpx.post(f"{prefect}/flows/filter", json={}, auth=(user, password)).is_success


@pytest.fixture(scope="module")
def two_stack_runs(stack: Stack, data_slices: Path):
    """Two smoke pipelines started together on the stack, each with two IMDb variants."""
    smoke = ["run", "--profile", "smoke", "--data-dir", str(data_slices)]
    sides = [("a", "imdb_dense,imdb_l2"), ("b", "imdb_dropout,imdb_reduced")]
    procs = []
    for name, variants in sides:
        workdir = stack.root / f"run-{name}"
        args = stack.command(workdir, *smoke, "--variants", variants)
        procs.append(subprocess.Popen(args, **stack.options(workdir)))
    return [(p, *p.communicate(timeout=900)) for p in procs]


def test_two_runs_at_once_on_the_stack_end_with_the_better_champion(
    stack: Stack, two_stack_runs, monkeypatch: pytest.MonkeyPatch
):
    for proc, out, err in two_stack_runs:
        assert proc.returncode == 0, (out + err)[-3000:]
        for secret in stack.secrets():  # credentials come from the environment, never shown
            assert secret not in out + err
    client = stack.mlflow(monkeypatch)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert sorted(r.data.tags.get("role") for r in runs) == ["pipeline"] * 2 + ["variant"] * 4
    assert {r.info.status for r in runs} == {"FINISHED"}
    for run in runs:
        assert run.info.artifact_uri.startswith("mlflow-artifacts:")  # through the server
    versions = client.search_model_versions(f"name = '{MODEL}'")
    assert len(versions) == 2  # one challenger per pipeline run
    champion = client.get_model_version_by_alias(MODEL, "champion")
    # The registration lock orders the two promotions; each order has one outcome. The gate
    # promotes a challenger only when it beats the champion beyond chance.
    promoted = [v for v in versions if v.tags["promotion.decision"] == "promoted"]
    if len(promoted) == 2:  # the worse came first, the better replaced it
        best, worse = sorted(promoted, key=lambda v: -float(v.tags["promotion.test_accuracy"]))
        assert champion.version == best.version
        assert client.get_model_version_by_alias(MODEL, "previous").version == worse.version
    else:  # the first became champion, the second did not beat it
        (first,) = promoted
        (second,) = (v for v in versions if v.version != first.version)
        assert champion.version == first.version
        assert second.tags["promotion.decision"] == "rejected"
        assert f"champion v{first.version}" in second.tags["promotion.reason"]


def test_no_secret_in_the_output_prefect_logs_runs_or_stack_logs(
    stack: Stack, two_stack_runs, monkeypatch: pytest.MonkeyPatch
):
    """The MLflow password and the Prefect auth string reach neither the command's output,
    nor Prefect's logs, flow and task runs (parameters included), nor the MLflow runs'
    params and tags, nor the servers' and workers' logs."""
    import json

    places = {f"run {i} output": out + err for i, (_, out, err) in enumerate(two_stack_runs)}
    prefect = stack.client["PREFECT_API_URL"]
    user, _, password = stack.client["PREFECT_API_AUTH_STRING"].partition(":")
    for kind in ("logs", "flow_runs", "task_runs"):
        found, offset = [], 0
        while True:
            page = Answers().post(
                f"{prefect}/{kind}/filter", json={"limit": 200, "offset": offset},
                auth=(user, password),
            ).json()  # fmt: skip
            found += page
            offset += len(page)
            if len(page) < 200:
                break
        places[f"Prefect {kind}"] = json.dumps(found)
    assert "runs done in" in places["Prefect logs"]  # the logs are there to search
    client = stack.mlflow(monkeypatch)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    places["MLflow runs"] = json.dumps([[r.data.params, r.data.tags] for r in runs])
    assert '"profile": "smoke"' in places["MLflow runs"]
    for log in sorted((stack.root / "state" / "logs").glob("*.log")):
        places[log.name] = log.read_text(errors="replace")
    assert "workers.log" in places and "mlflow.log" in places
    for place, text in places.items():
        for secret in stack.secrets():
            assert secret not in text, place


def test_a_run_after_postgresql_restarted_needs_no_manual_step(
    stack: Stack, two_stack_runs, data_slices: Path, monkeypatch: pytest.MonkeyPatch
):
    for command in (["down", "postgres"], ["up", "postgres"]):
        subprocess.run([str(STACK), *command], env=stack.env, check=True, capture_output=True)
    workdir = stack.root / "after-restart"
    done = stack.run(
        workdir, "run", "--profile", "smoke", "--data-dir", str(data_slices),
        "--variants", "imdb_reduced", "--force",
    )  # fmt: skip
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    client = stack.mlflow(monkeypatch)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert len(runs) == 2 * 3 + 2  # the two runs' and this one's: pipeline and variant
    assert {r.info.status for r in runs} == {"FINISHED"}
    assert os.environ.get("MLFLOW_TRACKING_PASSWORD") == stack.client["MLFLOW_TRACKING_PASSWORD"]


def test_report_promote_score_and_serve_work_against_the_stack(
    stack: Stack, two_stack_runs, data_slices: Path, monkeypatch: pytest.MonkeyPatch
):
    """A 3-seed smoke study on the stack, then the commands after a run, pointed at the
    tracking server (a smoke check each)."""
    from tests.helpers import process, wait_for

    since = int(time.time() * 1000)
    study = stack.run(
        stack.root / "study", "run", "--profile", "smoke", "--data-dir", str(data_slices),
        "--variants", "imdb_reduced", "--seeds", "3", "--force",
    )  # fmt: skip
    assert study.returncode == 0, (study.stdout + study.stderr)[-3000:]
    trials = _runs_since(stack.mlflow(monkeypatch), since, role="variant")
    assert (
        sorted((r.data.tags["label"], r.info.status) for r in trials)
        == [("imdb_reduced", "FINISHED")] * 3
    )
    workdir = stack.root / "commands"
    workdir.mkdir()
    env = stack.options(workdir)["env"]
    uri = ["--tracking-uri", stack.client["MLFLOW_TRACKING_URI"]]

    def variants(*args: str) -> subprocess.CompletedProcess:
        done = subprocess.run(
            [str(BIN / "variants"), *args], env=env, cwd=workdir, capture_output=True,
            text=True, timeout=600,
        )  # fmt: skip
        assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
        for secret in stack.secrets():
            assert secret not in done.stdout + done.stderr
        return done

    assert "report" in variants("report", *uri).stdout
    champion = stack.mlflow(monkeypatch).get_model_version_by_alias(MODEL, "champion")
    promote = ["promote", "--model", MODEL, "--version", champion.version, "--dry-run"]
    variants(*promote, "--data-dir", str(data_slices), "--profile", "smoke", *uri)
    reviews = workdir / "reviews.txt"
    reviews.write_text("A wonderful film, I loved it.\nAwful, a waste of time.\n")
    assert "2 rows scored" in variants("score", str(reviews), "--model", MODEL, *uri).stdout
    port = free_port()
    args = [str(BIN / "variants"), "serve", "--model", MODEL, "--port", str(port), *uri]
    with process(args, env, workdir, workdir / "serve.log"):
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: httpx.get(f"{url}/ping").status_code == 200, 180, "variants serve")
        body = {"inputs": ["A wonderful film, I loved it."]}
        answer = httpx.post(f"{url}/invocations", json=body, timeout=60)
        assert answer.status_code == 200, answer.text
        assert answer.json()["predictions"][0]["label"] in ("positive", "negative")
    log = (workdir / "serve.log").read_text()
    assert not any(secret in log for secret in stack.secrets())


def _started(stack: Stack, workdir: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(stack.command(workdir, *args), **stack.options(workdir))


def _training_worker(stack: Stack, client: MlflowClient, since_ms: int) -> str:
    """The address of a Dask worker in a trial, once that trial's MLflow run exists."""
    deadline = time.monotonic() + 300
    with stack.dask() as dask:
        while time.monotonic() < deadline:
            busy = [w for w, keys in dask.processing().items() if any("train" in k for k in keys)]
            if busy and _runs_since(client, since_ms, "RUNNING", role="variant"):
                return busy[0]
            time.sleep(0.2)
    raise AssertionError("no trial started on the Dask workers within 300 s")


def _runs_since(client: MlflowClient, since_ms: int, *status: str, role: str | None = None):
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    return [
        r
        for r in runs
        if r.info.start_time >= since_ms
        and (not status or r.info.status in status)
        and (role is None or r.data.tags.get("role") == role)
    ]


def test_a_lost_dask_scheduler_fails_clearly_and_a_killed_worker_reruns_its_trial(
    stack: Stack, data_slices: Path, monkeypatch: pytest.MonkeyPatch
):
    """SIGKILL of the scheduler mid-trial: one clear line, runs FAILED, nothing registered.
    SIGKILL of a worker mid-trial (the next run, after the scheduler is back): Dask runs the
    trial again on a worker, the run finishes, and the lost attempt's run ends FAILED."""
    import signal

    client = stack.mlflow(monkeypatch)
    smoke = ["run", "--profile", "smoke", "--data-dir", str(data_slices), "--force"]
    versions = len(client.search_model_versions(f"name = '{MODEL}'"))
    since = int(time.time() * 1000)
    proc = _started(stack, stack.root / "scheduler-lost", *smoke, "--variants", "imdb_l2")
    _training_worker(stack, client, since)
    scheduler = int((stack.root / "state" / "pids" / "scheduler.pid").read_text())
    os.kill(scheduler, signal.SIGKILL)
    out, err = proc.communicate(timeout=300)
    address = stack.client["VARIANTS_DASK_ADDRESS"]
    assert proc.returncode == 1, out + err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert errors == [
        f"error: lost the Dask scheduler {address} during the run (scheduler-connection-lost); "
        "this run's MLflow runs ended FAILED and nothing was registered: start the scheduler "
        "and its workers again (their workers exit with it; with the stack: scripts/stack up "
        "scheduler workers) and run again"
    ], err
    assert "Traceback" not in out + err and "FutureCancelledError" not in out + err
    lost = _runs_since(client, since)
    assert {r.data.tags["role"] for r in lost} == {"pipeline", "variant"}
    assert {r.info.status for r in lost} == {"FAILED"}
    assert len(client.search_model_versions(f"name = '{MODEL}'")) == versions

    for command in (["down", "scheduler", "workers"], ["up", "scheduler", "workers"]):
        subprocess.run([str(STACK), *command], env=stack.env, check=True, capture_output=True)
    since = int(time.time() * 1000)
    proc = _started(stack, stack.root / "worker-lost", *smoke, "--variants", "imdb_l2")
    worker = _training_worker(stack, client, since)
    with stack.dask() as dask:
        os.kill(dask.run(os.getpid, workers=[worker])[worker], signal.SIGKILL)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, (out + err)[-3000:]
    variants = _runs_since(client, since, role="variant")
    assert sorted(r.info.status for r in variants) == ["FAILED", "FINISHED"]
    (attempt,) = (r for r in variants if r.info.status == "FAILED")
    assert attempt.data.tags[SWEPT_TAG] == "its Dask worker died; the trial ran again"
    assert {r.info.status for r in _runs_since(client, since, role="pipeline")} == {"FINISHED"}
    assert len(client.search_model_versions(f"name = '{MODEL}'")) == versions + 1


def test_a_killed_mlflow_server_fails_clearly_and_a_short_outage_is_ridden_out(
    stack: Stack, data_slices: Path, monkeypatch: pytest.MonkeyPatch
):
    """SIGKILL of the MLflow server mid-trial: within 95 s one error line naming it, its runs
    left RUNNING, nothing registered, the champion unchanged. The next run, through a ~10 s
    stop of the server
    (stopped, then started again), rides it out with MLflow's HTTP retries: it finishes,
    one metric point per epoch, and its start-up swept the killed run's runs FAILED."""
    import signal

    from keras_variants.config.variants import HISTORY_KEYS

    client = stack.mlflow(monkeypatch)
    uri = stack.client["MLFLOW_TRACKING_URI"]
    smoke = ["run", "--profile", "smoke", "--data-dir", str(data_slices), "--force"]
    versions = len(client.search_model_versions(f"name = '{MODEL}'"))
    champion = _champion(client)
    since = int(time.time() * 1000)
    proc = _started(stack, stack.root / "mlflow-killed", *smoke, "--variants", "imdb_l2")
    _training_worker(stack, client, since)
    server = int((stack.root / "state" / "pids" / "mlflow.pid").read_text())
    os.killpg(server, signal.SIGKILL)
    killed = time.monotonic()
    out, err = proc.communicate(timeout=300)
    waited = time.monotonic() - killed
    print(f"killed MLflow server: the run ended {waited:.0f} s later")
    assert proc.returncode == 1, out + err
    # One MLflow call gives up after its retries (~60 s, runtime.ENVIRONMENT_DEFAULTS), and
    # no later call of the trial waits them out again: measured 66 s (133 s when the trial
    # still joined its system-metrics thread and logged its last sample).
    assert waited < 95
    assert _lost_server_error(err, uri)
    assert "Traceback" not in out + err
    subprocess.run([str(STACK), "up", "mlflow"], env=stack.env, check=True, capture_output=True)
    left = _runs_since(client, since)
    assert {r.info.status for r in left} == {"RUNNING"}
    assert len(client.search_model_versions(f"name = '{MODEL}'")) == versions
    assert _champion(client) == champion

    since = int(time.time() * 1000)
    proc = _started(stack, stack.root / "mlflow-outage", *smoke, "--variants", "imdb_l2")
    _training_worker(stack, client, since)
    stopped = time.monotonic()
    subprocess.run([str(STACK), "down", "mlflow"], env=stack.env, check=True, capture_output=True)
    time.sleep(10)
    subprocess.run([str(STACK), "up", "mlflow"], env=stack.env, check=True, capture_output=True)
    print(f"MLflow server stopped and started again: {time.monotonic() - stopped:.0f} s")
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, (out + err)[-3000:]
    swept = [client.get_run(r.info.run_id) for r in left]
    assert {(r.info.status, r.data.tags.get(SWEPT_TAG)) for r in swept} == {
        ("FAILED", "owner process died")
    }
    runs = _runs_since(client, since)
    assert {r.info.status for r in runs} == {"FINISHED"}
    (trial,) = (r for r in runs if r.data.tags["role"] == "variant")
    for key in HISTORY_KEYS.values():  # no gap, no duplicate
        steps = [m.step for m in client.get_metric_history(trial.info.run_id, key)]
        assert sorted(steps) == [1, 2], key
    assert len(client.search_model_versions(f"name = '{MODEL}'")) == versions + 1


def test_a_stalled_mlflow_server_fails_clearly_within_the_bound(
    stack: Stack, data_slices: Path, monkeypatch: pytest.MonkeyPatch
):
    """SIGSTOP of the MLflow server mid-trial (the kernel still accepts connections, nothing
    answers): within 95 s one error line naming it, nothing registered, the champion
    unchanged; once the server runs again (SIGCONT) the run's runs are RUNNING, for the next
    run's start-up sweep (as for a killed server), or FAILED: never FINISHED."""
    import signal

    client = stack.mlflow(monkeypatch)
    uri = stack.client["MLFLOW_TRACKING_URI"]
    smoke = ["run", "--profile", "smoke", "--data-dir", str(data_slices), "--force"]
    versions = len(client.search_model_versions(f"name = '{MODEL}'"))
    champion = _champion(client)
    since = int(time.time() * 1000)
    proc = _started(stack, stack.root / "mlflow-stalled", *smoke, "--variants", "imdb_l2")
    _training_worker(stack, client, since)
    server = int((stack.root / "state" / "pids" / "mlflow.pid").read_text())
    os.killpg(server, signal.SIGSTOP)  # its own session: the server and its workers
    stalled = time.monotonic()
    try:
        out, err = proc.communicate(timeout=300)
        waited = time.monotonic() - stalled
    finally:
        os.killpg(server, signal.SIGCONT)
        proc.kill()
    print(f"stalled MLflow server: the run ended {waited:.0f} s later")
    assert proc.returncode == 1, out + err
    # Each attempt of a call waits out the timeout (4 x 5 s) besides the retries' waits (60 s):
    # measured 87 s.
    assert waited < 95
    assert _lost_server_error(err, uri)
    assert "Traceback" not in out + err
    left = _runs_since(client, since)
    assert {r.data.tags["role"] for r in left} == {"pipeline", "variant"}
    assert {r.info.status for r in left} <= {"RUNNING", "FAILED"}
    assert len(client.search_model_versions(f"name = '{MODEL}'")) == versions
    assert _champion(client) == champion


def _lost_server_error(err: str, uri: str) -> bool:
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert errors == [
        f"error: the MLflow tracking server {uri} stopped answering during the run (it was "
        "retried for about a minute); nothing was registered, and this run's MLflow runs stay "
        "RUNNING until the next 'variants run' marks them FAILED. Start the server again "
        "(with the stack: scripts/stack up mlflow) and run again"
    ], err
    return True


def _champion(client: MlflowClient) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(MODEL, "champion").version
    except MlflowException:  # no champion yet
        return None


# --- Dask's wires: TLS with certificates of the stack's own CA -----------------------------


def dask_client(settings: dict[str, str]):
    """A Dask client of the scheduler that ``settings`` (what ``scripts/stack env`` prints)
    name, with the certificate they name."""
    from distributed import Client
    from distributed.security import Security

    security = Security(
        tls_ca_file=settings["DASK_DISTRIBUTED__COMM__TLS__CA_FILE"],
        tls_client_cert=settings["DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT"],
        tls_client_key=settings["DASK_DISTRIBUTED__COMM__TLS__CLIENT__KEY"],
        require_encryption=True,
    )
    return Client(settings["VARIANTS_DASK_ADDRESS"], security=security, timeout=30)


@pytest.fixture(scope="module")
@tier("system")
def dask_part(tmp_path_factory: pytest.TempPathFactory):
    """The stack's Dask part alone (its scheduler and one worker), started by the script."""
    root = tmp_path_factory.mktemp("dask-part")
    env = subprocess_env(root, STACK_DIR=str(root / "state"), STACK_BIN=str(BIN),
                         STACK_DASK_PORT=str(free_port()), STACK_WORKERS="1",
                         STACK_WORKER_MEMORY="1GiB")  # fmt: skip
    command = [str(STACK), "up", "scheduler", "workers"]
    up = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert "TLS" in up.stdout
        printed = subprocess.run(
            [str(STACK), "env"], env=env, capture_output=True, text=True, check=True
        ).stdout
        client = dict(
            line.removeprefix("export ").split("=", 1) for line in printed.splitlines() if line
        )
        yield root, client
    finally:
        subprocess.run([str(STACK), "down"], env=env, capture_output=True, timeout=300)


def test_the_dask_scheduler_admits_only_holders_of_the_stacks_certificate(dask_part) -> None:
    """With the stack's client certificate: admitted, and the worker (admitted with its own)
    runs a task. Refused: plain TCP, TLS that trusts the CA but shows no certificate, and a
    certificate of another CA."""
    import socket
    import ssl

    from distributed import Client
    from distributed.security import Security

    _, settings = dask_part
    address = settings["VARIANTS_DASK_ADDRESS"]
    assert address.startswith("tls://127.0.0.1:")
    with dask_client(settings) as dask:
        workers = dask.scheduler_info(n_workers=-1)["workers"]
        assert len(workers) == 1 and all(w.startswith("tls://") for w in workers)
        assert dask.submit(sum, [1, 2]).result() == 3
    host, port = address.removeprefix("tls://").rsplit(":", 1)
    with pytest.raises(OSError):
        Client(f"tcp://{host}:{port}", timeout=10)
    trusting = ssl.create_default_context(cafile=settings["DASK_DISTRIBUTED__COMM__TLS__CA_FILE"])
    trusting.check_hostname = False
    with (
        socket.create_connection((host, int(port)), timeout=10) as raw,
        # TLS 1.3: the server's "certificate required" alert, or, when the server closes
        # first (a loaded machine), the end of the connection in the middle of the protocol.
        pytest.raises(ssl.SSLError, match=r"CERTIFICATE_REQUIRED|EOF occurred in violation"),
        trusting.wrap_socket(raw) as wrapped,
    ):
        wrapped.sendall(b"\0" * 8)
        wrapped.recv(8)
    with pytest.raises(OSError):
        Client(address, security=Security.temporary(), timeout=10)  # another CA's


def test_a_run_without_the_certificate_is_one_clear_error(dask_part, data_slices: Path) -> None:
    root, settings = dask_part
    address = settings["VARIANTS_DASK_ADDRESS"]
    workdir = root / "no-certificate"
    workdir.mkdir()
    done = subprocess.run(
        [str(BIN / "variants"), "run", "--profile", "smoke", "--data-dir", str(data_slices),
         "--variants", "imdb_reduced", "--runner", "dask", "--dask-address", address],
        env=subprocess_env(workdir), cwd=workdir, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    (line,) = [line for line in done.stderr.splitlines() if line.strip()]
    assert line.startswith(
        f"error: the Dask scheduler {address} talks TLS and admits only holders of a "
        "certificate of its CA, and DASK_DISTRIBUTED__COMM__TLS__CA_FILE is not set here"
    ), done.stderr


@pytest.mark.parametrize(
    ("address", "settings", "problem"),
    [
        ("tcp://h:8786", {}, None),
        (None, {"distributed.comm.require-encryption": True}, None),
        ("tcp://h:8786", {"distributed.comm.require-encryption": True},
         "would be reached without encryption"),
        ("h:8786", {"distributed.comm.require-encryption": True},
         "would be reached without encryption"),
        ("tls://h:8786", {}, "DASK_DISTRIBUTED__COMM__TLS__CA_FILE is not set here"),
        ("tls://h:8786", {"distributed.comm.tls.ca-file": "CA"},
         "DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT is not set here"),
        ("tls://h:8786", {"distributed.comm.tls.ca-file": "CA",
                          "distributed.comm.tls.client.cert": "CERT",
                          "distributed.comm.tls.client.key": "KEY"}, None),
        ("tls://h:8786", {"distributed.comm.tls.ca-file": "/nowhere/ca.pem"},
         "DASK_DISTRIBUTED__COMM__TLS__CA_FILE=/nowhere/ca.pem: no such file"),
    ],
)  # fmt: skip
def test_what_a_machine_lacks_to_join_the_cluster(
    address, settings: dict, problem: str | None, tmp_path: Path
) -> None:
    import dask.config

    from keras_variants.errors import ClusterError
    from keras_variants.lanes.cluster import check_security

    for name in ("CA", "CERT", "KEY"):
        (tmp_path / name).write_text("a PEM file")
    settings = {k: str(tmp_path / v) if v in ("CA", "CERT", "KEY") else v
                for k, v in settings.items()}  # fmt: skip
    keys = ["distributed.comm.require-encryption", "distributed.comm.tls.ca-file",
            "distributed.comm.tls.client.cert", "distributed.comm.tls.client.key"]  # fmt: skip
    empty = dict.fromkeys(keys)
    with dask.config.set(empty | settings):
        if problem is None:
            check_security(address)
        else:
            with pytest.raises(ClusterError, match=re.escape(problem)):
                check_security(address)
