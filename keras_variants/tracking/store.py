"""The MLflow tracking store: the client bound to it, its experiments, its health, and
runs left RUNNING by processes that died.

Every function takes the store explicitly (a client or a config); nothing here sets
MLflow's process-wide tracking or registry URI.
"""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import psutil
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from keras_variants.config.pipeline import PipelineConfig
from keras_variants.errors import TrackingStoreError, what_was_registered
from keras_variants.tracking.locks import store_lock

OWNER_HOST_TAG = "keras_variants.host"
OWNER_PID_TAG = "keras_variants.pid"
OWNER_STARTED_TAG = "keras_variants.pid_started"
SWEPT_TAG = "keras_variants.swept"
REPO = Path(__file__).resolve().parents[2]


def client_for(config: PipelineConfig) -> MlflowClient:
    """A client bound to the configured store for runs and registry alike (never to a
    registry URI set globally by an earlier call in this process)."""
    return MlflowClient(config.tracking_uri, registry_uri=config.tracking_uri)


def is_local_store(tracking_uri: str) -> bool:
    return not tracking_uri.startswith(("http://", "https://", "databricks"))


# Marks the experiments as model training for MLflow 3's UI (it then lists "Training
# runs"). The UI of 3.17 still opens on its GenAI overview unless the link carries
# ``?workflowType=machine_learning``, which every link this tool prints does (``ui_links``).
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}


def scoring_experiment(model: str) -> str:
    """The name of the experiment holding every scoring of registered model ``model``: its
    scoring history (linked from its model card)."""
    return f"{model} scoring"


def experiment_id(config: PipelineConfig, name: str) -> str:
    """The experiment named ``name`` (a data set's, a model's scorings), created with
    artifacts under ``mlruns/`` if new."""
    client = client_for(config)
    existing = client.get_experiment_by_name(name)
    if existing is None:
        location = config.artifact_root.as_uri() if is_local_store(config.tracking_uri) else None
        try:
            return client.create_experiment(name, artifact_location=location, tags=EXPERIMENT_KIND)
        except MlflowException:  # created meanwhile by a concurrent run
            existing = client.get_experiment_by_name(name)
    for key, value in EXPERIMENT_KIND.items():
        if existing.tags.get(key) != value:  # experiments made by an earlier version
            client.set_experiment_tag(existing.experiment_id, key, value)
    return existing.experiment_id


def git_commit() -> str:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return done.stdout.strip() if done.returncode == 0 else "unknown"


def owner_tags() -> dict[str, str]:
    """Who runs it, so a later start-up can tell a crashed run from a live one."""
    owner = psutil.Process()
    return {
        OWNER_HOST_TAG: socket.gethostname(),
        OWNER_PID_TAG: str(owner.pid),
        OWNER_STARTED_TAG: f"{owner.create_time():.3f}",
    }


def _owner_alive(tags: dict[str, str]) -> bool | None:
    """Whether the process that started a run still lives; None if it ran elsewhere."""
    if tags.get(OWNER_HOST_TAG) != socket.gethostname() or OWNER_PID_TAG not in tags:
        return None
    try:
        process = psutil.Process(int(tags[OWNER_PID_TAG]))
        return f"{process.create_time():.3f}" == tags.get(OWNER_STARTED_TAG)
    except (psutil.NoSuchProcess, ValueError):
        return False


def open_store(config: PipelineConfig) -> list[str]:
    """Fail clearly if the tracking store does not answer; else sweep stale runs."""
    try:
        # MLflow creates and migrates a new SQLite schema on first touch: one process at a time.
        with store_lock(config.tracking_uri, "init"):
            client_for(config).search_experiments(max_results=1)
    except Exception as exc:
        cause = str(exc).split("\n[SQL:")[0][:300]
        if "database is locked" in cause:
            hint = "Another process holds a write lock on it; run again when that one is done"
        elif "error code 401" in cause or "error code 403" in cause:
            hint = (
                "The server refused the credentials: set MLFLOW_TRACKING_USERNAME and "
                "MLFLOW_TRACKING_PASSWORD (on Dask workers too)"
            )
        else:
            hint = "Start it, or pass --tracking-uri / MLFLOW_TRACKING_URI to one that runs"
        raise TrackingStoreError(
            f"MLflow tracking store {config.tracking_uri} is unavailable "
            f"({type(exc).__name__}: {cause}). {hint}; nothing was trained or registered."
        ) from exc
    return sweep_stale_runs(config)


def server_unreachable(exc: BaseException | None) -> bool:
    """Whether ``exc`` (or what caused it) says the MLflow server did not answer even after
    MLflow's HTTP retries (refused, reset, or the same 5xx each time): another call to it
    now would only wait out the retries again."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        text = str(exc)
        if type(exc).__name__ in ("ConnectionError", "MaxRetryError", "NewConnectionError"):
            return True
        if text.startswith("API request to ") and "Max retries exceeded" in text:
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def lost_server(
    exc: BaseException, tracking_uri: str, gated: tuple[str, ...] = ()
) -> TrackingStoreError | None:
    """A clear error if ``exc`` says the MLflow server at ``tracking_uri`` stopped answering
    during a run; None for any other failure. ``gated``: the data sets whose gate had run."""
    if not server_unreachable(exc) or is_local_store(tracking_uri):
        return None
    return TrackingStoreError(
        f"the MLflow tracking server {tracking_uri} stopped answering during the run (it "
        f"was retried for about a minute); {what_was_registered(gated)}, and this run's MLflow "
        "runs stay RUNNING until the next 'variants run' marks them FAILED. Start the server "
        "again (with the stack: scripts/stack up mlflow) and run again"
    )


def sweep_stale_runs(config: PipelineConfig) -> list[str]:
    """End as FAILED this tool's RUNNING runs (a pipeline's, a scoring's) whose process on
    this host has died.

    A run killed with SIGKILL cannot end itself; the next pipeline start does it. Runs of
    live processes, and of other hosts, are left alone. Returns the swept run ids.
    """
    client = client_for(config)
    experiments = [e.experiment_id for e in client.search_experiments()]
    if not experiments:
        return []
    stale = [
        run
        for run in client.search_runs(
            experiments, f"attributes.status = 'RUNNING' and tags.`{OWNER_PID_TAG}` != ''"
        )
        if _owner_alive(run.data.tags) is False
    ]
    for run in stale:
        client.set_tag(run.info.run_id, SWEPT_TAG, "owner process died")
        client.set_terminated(run.info.run_id, "FAILED")
    return [run.info.run_id for run in stale]
