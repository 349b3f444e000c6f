"""Each variant's served model as an MLflow logged model of its run: named after the trial,
written whole or not at all (a failed write leaves the model FAILED and no partial files;
a full disk is said plainly)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from mlflow.entities import LoggedModelOutput, LoggedModelStatus
from mlflow.tracking import MlflowClient
from mlflow.utils.file_utils import local_file_uri_to_path

from keras_variants.config.trials import Trial
from keras_variants.errors import ArtifactStoreError, disk_full
from keras_variants.tracking.store import server_unreachable


def logged_model_name(trial: Trial) -> str:
    """The trial as a logged model's name (MLflow allows no ``/ : . % " '``):
    ``imdb_dropout dropout=0p2 seed 1``."""
    return trial.run_name.replace(":", "=").replace(".", "p")


def log_served_model(client: MlflowClient, run_id: str, trial: Trial, folder: Path) -> str:
    """The trial's pyfunc model (Keras model plus preprocessing), saved in ``folder``, as
    the run's logged model, named after the trial."""
    run = client.get_run(run_id)
    variant = trial.variant
    logged = client.create_logged_model(
        run.info.experiment_id,
        name=logged_model_name(trial),
        source_run_id=run_id,
        params={"variant": variant.name, "label": trial.label, "seed": str(trial.seed)},
        model_type=variant.dataset,
    )
    client.log_model_artifacts(logged.model_id, str(folder))
    client.finalize_logged_model(logged.model_id, LoggedModelStatus.READY)
    client.log_outputs(run_id, [LoggedModelOutput(logged.model_id, step=0)])
    return logged.model_id


@contextmanager
def artifact_writes(client: MlflowClient, run_id: str) -> Iterator[None]:
    """Write a run's artifacts; if that fails, leave no partial model, and say so plainly
    when the disk is full."""
    try:
        yield
    except BaseException as exc:
        if not server_unreachable(exc):
            with suppress(Exception):  # the original error matters more than a failed clean-up
                _discard_models(client, run_id)
        if disk_full(exc):
            where = exc.filename2 or exc.filename or client.get_run(run_id).info.artifact_uri
            raise ArtifactStoreError(
                f"no space left on the device while writing run {run_id}'s artifacts "
                f"({where}). Free space there, or point --tracking-uri at a store with room, "
                "and run again; earlier runs and registered models are untouched."
            ) from exc
        raise


def _discard_models(client: MlflowClient, run_id: str) -> None:
    """Mark the run's logged models FAILED and delete what was written of them locally."""
    experiment = client.get_run(run_id).info.experiment_id
    for model in client.search_logged_models(
        [experiment], filter_string=f"source_run_id = '{run_id}'"
    ):
        client.finalize_logged_model(model.model_id, LoggedModelStatus.FAILED)
        if model.artifact_location.startswith("file:"):
            folder = Path(local_file_uri_to_path(model.artifact_location))
            shutil.rmtree(folder.parent if folder.name == "artifacts" else folder, True)
