"""Scoring tasks (``variants score``): each one call over :mod:`keras_variants.scoring`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities.model_registry import ModelVersion
from prefect import task
from prefect.cache_policies import NO_CACHE

from keras_variants.config.pipeline import PipelineConfig
from keras_variants.registry import loading
from keras_variants.scoring import batch, drift, inputs, outputs, runs
from keras_variants.scoring.request import ScoringRequest
from keras_variants.tracking.store import client_for


@task(name="read-input", cache_policy=NO_CACHE)
def read_input(request: ScoringRequest) -> inputs.ScoringInput:
    """The input file or folder, read and checked: rows to score and rows rejected."""
    return inputs.read_input(request.input, request.dataset, request.model)


@task(name="find-version", cache_policy=NO_CACHE)
def find_version(config: PipelineConfig, request: ScoringRequest) -> ModelVersion:
    """The registered version the request names (default: the champion)."""
    client = client_for(config)
    number = loading.resolve_version(client, request.model, request.alias, request.version)
    return client.get_model_version(request.model, number)


@task(name="load-model", cache_policy=NO_CACHE)
def load_model(config: PipelineConfig, version: ModelVersion) -> mlflow.pyfunc.PyFuncModel:
    """The version's served model, loaded the registry's one way (its files verified)."""
    return loading.load_version(client_for(config), version.name, str(version.version))


@task(name="score", cache_policy=NO_CACHE)
def score_rows(model: mlflow.pyfunc.PyFuncModel, read: inputs.ScoringInput) -> batch.Scored:
    """Every row through the served ``predict``, in batches, with a progress bar."""
    return batch.score_rows(
        model, read.ids, read.inputs, read.labels, progress=batch.terminal_progress(len(read.ids))
    )


@task(name="check-drift", cache_policy=NO_CACHE)
def check_drift(
    config: PipelineConfig,
    version: ModelVersion,
    model: mlflow.pyfunc.PyFuncModel,
    scored: batch.Scored,
) -> drift.DriftOutcome:
    """Drift signals and the accuracy estimate for the scored rows."""
    return drift.check_drift(client_for(config), version, model, scored.sent, scored.predictions)


@task(name="write-files", cache_policy=NO_CACHE)
def write_files(
    folder: Path, scored: batch.Scored, read: inputs.ScoringInput, summary: dict[str, Any]
) -> None:
    """The predictions, the rejected rows and the summary, into ``folder``."""
    outputs.write_files(folder, scored.predictions, read.rejected + scored.rejected, summary)


@task(name="log-scoring", cache_policy=NO_CACHE)
def log_scoring(
    config: PipelineConfig,
    run_id: str,
    version: ModelVersion,
    model_id: str | None,
    read: inputs.ScoringInput,
    metrics: dict[str, float | None],
    folder: Path,
    tags: dict[str, str] | None = None,
) -> None:
    """The scoring's params, inputs, metrics, tags and files on its MLflow run."""
    runs.log_scoring(client_for(config), run_id, version, model_id, read, metrics, folder, tags)
