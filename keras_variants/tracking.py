"""MLflow at one edge: experiments, parent and child runs, metrics, inputs and models.

Runs are always ended: FINISHED on success, KILLED on interruption, FAILED otherwise, so no
run of this tool stays RUNNING. Worker threads pass run ids explicitly, since MLflow's
active-run stack is thread-local.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from pathlib import Path

import keras
import mlflow
import numpy as np
import psutil
from mlflow.data.dataset_source_registry import resolve_dataset_source
from mlflow.data.meta_dataset import MetaDataset
from mlflow.entities import LoggedModelStatus, Metric
from mlflow.exceptions import MlflowException
from mlflow.models import Model, infer_signature
from mlflow.tracking import MlflowClient
from mlflow.utils.file_utils import local_file_uri_to_path

from keras_variants.config import PipelineConfig, VariantConfig
from keras_variants.datasets import Dataset
from keras_variants.errors import ArtifactStoreError, TrackingStoreError, disk_full
from keras_variants.training import Splits, TrainingResult

TOOL_TAG = "keras_variants.pipeline_id"  # marks every run this tool starts
OWNER_HOST_TAG = "keras_variants.host"
OWNER_PID_TAG = "keras_variants.pid"
OWNER_STARTED_TAG = "keras_variants.pid_started"
REPO = Path(__file__).resolve().parents[1]
# MLflow's model saving is not thread-safe (concurrent saves lose files): one at a time.
_MODEL_LOGGING = threading.Lock()


def client_for(config: PipelineConfig) -> MlflowClient:
    """A client bound to the configured store for runs and registry alike (never to a
    registry URI set globally by an earlier call in this process)."""
    return MlflowClient(config.tracking_uri, registry_uri=config.tracking_uri)


def use_store(config: PipelineConfig) -> None:
    """Point MLflow's fluent API (model loading, registration) at the configured store."""
    mlflow.set_tracking_uri(config.tracking_uri)
    mlflow.set_registry_uri(config.tracking_uri)


def is_local_store(tracking_uri: str) -> bool:
    return not tracking_uri.startswith(("http://", "https://", "databricks"))


# MLflow 3's UI opens an experiment on its GenAI overview unless this tag says otherwise;
# with it, the experiment opens on its training runs.
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}


def experiment_id(config: PipelineConfig, name: str) -> str:
    """The experiment for one data set, created with artifacts under ``mlruns/`` if new."""
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


def _end_status(exc: BaseException) -> str:
    """KILLED for interruptions (Ctrl-C, SIGTERM, exit: anything that is not an Exception,
    like Prefect's TerminationSignal), FAILED for errors."""
    return "FAILED" if isinstance(exc, Exception) else "KILLED"


@contextmanager
def parent_runs(config: PipelineConfig, datasets: dict[str, Dataset]) -> Iterator[dict[str, str]]:
    """One parent run per data set's experiment for this pipeline run; yields run ids."""
    client = client_for(config)
    pipeline_id = uuid.uuid4().hex[:12]
    runs: dict[str, str] = {}
    try:
        for name, data in datasets.items():
            run = client.create_run(
                experiment_id(config, name),
                run_name=f"pipeline-{pipeline_id}",
                tags=_common_tags(config, pipeline_id, name) | {"role": "pipeline"},
            )
            runs[name] = run.info.run_id
            client.log_batch(
                run.info.run_id,
                params=[
                    mlflow.entities.Param(k, str(v))
                    for k, v in {
                        "profile": config.profile.name,
                        "seed": config.seed,
                        "variants": ",".join(v.name for v in config.selected()),
                        **{f"data.{f}.sha256": d for f, d in data.fingerprints.items()},
                    }.items()
                ],
            )
        yield runs
    except BaseException as exc:
        for run_id in runs.values():
            client.set_terminated(run_id, _end_status(exc))
        raise
    for run_id in runs.values():
        client.set_terminated(run_id, "FINISHED")


def _common_tags(config: PipelineConfig, pipeline_id: str, dataset: str) -> dict[str, str]:
    owner = psutil.Process()
    return {
        TOOL_TAG: pipeline_id,
        "dataset": dataset,
        "profile": config.profile.name,
        "git_commit": git_commit(),
        # Who runs it, so a later start-up can tell a crashed run from a live one.
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


def _lock_path(tracking_uri: str, purpose: str) -> Path:
    if tracking_uri.startswith("sqlite:///"):
        database = Path(tracking_uri.removeprefix("sqlite:///"))
        return database.with_name(f"{database.name}.{purpose}.lock")
    store = hashlib.sha256(tracking_uri.encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / "keras-variants-locks" / f"{store}.{purpose}.lock"


@contextmanager
def store_lock(tracking_uri: str, purpose: str) -> Iterator[None]:
    """Exclusive, across the processes of this host, for one ``purpose`` on one store.

    The lock file sits next to a SQLite database, else in the temp folder keyed by the
    store's URI. Processes on other hosts are not covered; there the registry gate's re-read
    of the champion right before switching is the guard.
    """
    path = _lock_path(tracking_uri, purpose)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def promotion_lock(config: PipelineConfig, model: str) -> AbstractContextManager[None]:
    """Held while one registered model's gate compares and switches aliases, so two
    promotions at once run one after the other and the second sees the first's champion."""
    return store_lock(config.tracking_uri, f"promote-{model}")


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
        else:
            hint = "Start it, or pass --tracking-uri / MLFLOW_TRACKING_URI to one that runs"
        raise TrackingStoreError(
            f"MLflow tracking store {config.tracking_uri} is unavailable "
            f"({type(exc).__name__}: {cause}). {hint}; nothing was trained or registered."
        ) from exc
    return sweep_stale_runs(config)


def sweep_stale_runs(config: PipelineConfig) -> list[str]:
    """End as FAILED this tool's RUNNING runs whose process on this host has died.

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
            experiments, f"attributes.status = 'RUNNING' and tags.`{TOOL_TAG}` != ''"
        )
        if _owner_alive(run.data.tags) is False
    ]
    for run in stale:
        client.set_tag(run.info.run_id, "keras_variants.swept", "owner process died")
        client.set_terminated(run.info.run_id, "FAILED")
    return [run.info.run_id for run in stale]


@contextmanager
def variant_run(
    config: PipelineConfig, variant: VariantConfig, parent_run_id: str
) -> Iterator[str]:
    """A child run of ``parent_run_id``, active in this thread while the block runs."""
    parent = client_for(config).get_run(parent_run_id)
    use_store(config)
    run = mlflow.start_run(
        experiment_id=parent.info.experiment_id,
        run_name=variant.name,
        parent_run_id=parent_run_id,
        tags={
            **{k: v for k, v in parent.data.tags.items() if not k.startswith("mlflow.")},
            "role": "variant",
            "variant": variant.name,
        },
    )
    try:
        yield run.info.run_id
    except BaseException as exc:
        mlflow.end_run(_end_status(exc))
        raise
    mlflow.end_run("FINISHED")


class EpochMetricsLogger(keras.callbacks.Callback):
    """Logs ``train/*`` and ``val/*`` after every epoch, so curves grow live in the UI."""

    def __init__(self, tracking_uri: str, run_id: str) -> None:
        super().__init__()
        self.client, self.run_id = MlflowClient(tracking_uri), run_id

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        from keras_variants.training import HISTORY_KEYS

        stamp = int(time.time() * 1000)
        metrics = [
            Metric(HISTORY_KEYS[k], float(v), stamp, epoch + 1)
            for k, v in (logs or {}).items()
            if k in HISTORY_KEYS
        ]
        self.client.log_batch(self.run_id, metrics=metrics)


def log_variant_result(
    run_id: str,
    config: PipelineConfig,
    variant: VariantConfig,
    data: Dataset,
    splits: Splits,
    epochs: int,
    result: TrainingResult,
    input_example: np.ndarray,
) -> None:
    """Params, test metrics, data inputs, confusion matrix and the model of one variant."""
    mlflow.log_params(
        {
            "architecture": variant.architecture,
            "hidden_units": list(variant.hidden_units),
            "conv_filters": list(variant.conv_filters),
            "input_shape": list(variant.input_shape),
            "optimizer": variant.optimizer,
            "learning_rate": variant.learning_rate,
            "epochs": epochs,
            "batch_size": variant.batch_size,
            "l2": variant.l2,
            "dropout": variant.dropout,
            "seed": config.seed,
            "profile": config.profile.name,
            "parameter_count": result.parameter_count,
            "train_rows": len(splits.train),
            "validation_rows": len(splits.validation),
            "test_rows": len(splits.test),
        }
    )
    validation_loss = result.history["val/loss"]
    best = result.validation_loss_min_epoch - 1
    mlflow.log_metrics(
        result.test_metrics
        | {
            "validation_loss_min_epoch": result.validation_loss_min_epoch,
            "val/loss_min": validation_loss[best],
            "val/accuracy_at_loss_min": result.history["val/accuracy"][best],
            "training_seconds": result.training_seconds,
        }
    )
    mlflow.set_tags({f"data.{f}.sha256": d for f, d in data.fingerprints.items()})
    for file, path in data.files.items():
        with warnings.catch_warnings():  # a local path matches two equivalent source kinds
            warnings.simplefilter("ignore", UserWarning)
            source = resolve_dataset_source(path)
        dataset = MetaDataset(source, name=file, digest=data.fingerprints[file][:32])
        _tolerating_a_concurrent_insert(mlflow.log_input, dataset, context="training")
    signature = infer_signature(input_example, result.model.predict(input_example, verbose=0))
    with _artifact_writes(run_id):
        mlflow.log_dict(
            {
                "labels": list(range(len(result.confusion_matrix))),
                "matrix": result.confusion_matrix.tolist(),
            },
            "confusion_matrix.json",
        )
        with _MODEL_LOGGING:
            _log_model(result.model, signature, input_example)


@contextmanager
def _artifact_writes(run_id: str) -> Iterator[None]:
    """Write a run's artifacts; if that fails, leave no partial model, and say so plainly
    when the disk is full."""
    try:
        yield
    except BaseException as exc:
        with suppress(Exception):  # the original error matters more than a failed clean-up
            _discard_models(run_id)
        if disk_full(exc):
            where = exc.filename2 or exc.filename or mlflow.get_artifact_uri()
            raise ArtifactStoreError(
                f"no space left on the device while writing run {run_id}'s artifacts "
                f"({where}). Free space there, or point --tracking-uri at a store with room, "
                "and run again; earlier runs and registered models are untouched."
            ) from exc
        raise


def _discard_models(run_id: str) -> None:
    """Mark the run's logged models FAILED and delete what was written of them locally."""
    client = MlflowClient(mlflow.get_tracking_uri())
    experiment = client.get_run(run_id).info.experiment_id
    for model in client.search_logged_models(
        [experiment], filter_string=f"source_run_id = '{run_id}'"
    ):
        client.finalize_logged_model(model.model_id, LoggedModelStatus.FAILED)
        if model.artifact_location.startswith("file:"):
            folder = Path(local_file_uri_to_path(model.artifact_location))
            shutil.rmtree(folder.parent if folder.name == "artifacts" else folder, True)


def _tolerating_a_concurrent_insert(write: Callable[..., None], *args, **kwargs) -> None:
    """Call ``write`` again if another process inserted the same row (say, a data set that
    both runs log) between MLflow's check for it and its own insert."""
    attempts = 3
    for attempt in range(attempts):
        try:
            return write(*args, **kwargs)
        except MlflowException as exc:
            if "UNIQUE constraint" not in str(exc) or attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1))


class _KerasFlavor:
    """``mlflow.keras``, except that the model folder exists before the input example is
    written into it (MLflow 3.17's keras ``save_model`` writes the example first and fails)."""

    __name__ = "mlflow.keras"

    @staticmethod
    def save_model(path: str, **kwargs: object) -> None:
        os.makedirs(path, exist_ok=True)
        mlflow.keras.save_model(path=path, **kwargs)


def _log_model(model: keras.Model, signature, input_example: np.ndarray) -> None:
    Model.log(
        artifact_path=None,
        name="model",
        flavor=_KerasFlavor,
        model=model,
        signature=signature,
        input_example=input_example,
        # Explicit requirements skip MLflow's slow inference of them (it reloads the model).
        pip_requirements=[f"keras=={keras.__version__}", f"tensorflow-cpu=={_tf_version()}"],
    )


def _tf_version() -> str:
    import tensorflow as tf

    return tf.__version__
