"""A scoring's MLflow run, through an explicit client and run id: in the model's own
scoring experiment (``<model> scoring``: the model's scoring history, linked from its
model card; nothing about a scoring is written on the version, which the next scoring
would overwrite), tagged ``keras_variants.kind=scoring``, with the input as a dataset input
(SHA-256), the model version and its logged model as the run's model input, the summary's
numbers as metrics linked to that model and data set, and the files as artifacts.

The run ends FINISHED when the scoring does, FAILED on an error, KILLED on an interruption;
one whose process was killed outright is ended FAILED by the next scoring or pipeline run.
Releases before the scoring experiment wrote the last scoring on the version as tags
(``scoring.last_run_id``, ``scoring.last_at``, ``scoring.last_result``); the next scoring
with that version deletes them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from mlflow.entities import Dataset as DatasetEntity
from mlflow.entities import LoggedModelInput, Metric, Param
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from keras_variants.config.pipeline import PipelineConfig
from keras_variants.scoring.rows import ScoringInput
from keras_variants.tracking.datasets import dataset_input, file_dataset
from keras_variants.tracking.store import (
    experiment_id,
    git_commit,
    owner_tags,
    scoring_experiment,
    sweep_stale_runs,
)

KIND_TAG = "keras_variants.kind"
# The version tags of the last scoring that earlier releases wrote (per-scoring state).
STALE_VERSION_TAGS = "scoring.last_"
DIGEST_CHARS = 32  # MLflow keeps at most 36 characters of a dataset digest


@contextmanager
def scoring_run(
    client: MlflowClient, config: PipelineConfig, dataset: str, version: ModelVersion
) -> Iterator[str]:
    """A new run in the model's scoring experiment for scoring with ``version``; yields
    its id. Runs that a killed process left RUNNING (a scoring's or a pipeline's) end
    FAILED first; the version's per-scoring tags of earlier releases are deleted."""
    sweep_stale_runs(config)
    delete_stale_version_tags(client, version)
    run = client.create_run(
        experiment_id(config, scoring_experiment(version.name)),
        run_name=f"score-{version.name}-v{version.version}",
        tags={
            KIND_TAG: "scoring",
            "role": "scoring",
            "dataset": dataset,
            "model": version.name,
            "model_version": str(version.version),
            "git_commit": git_commit(),
            **owner_tags(),
        },
    )
    run_id = run.info.run_id
    try:
        yield run_id
    except BaseException as exc:
        client.set_terminated(run_id, "FAILED" if isinstance(exc, Exception) else "KILLED")
        raise
    client.set_terminated(run_id, "FINISHED")


def delete_stale_version_tags(client: MlflowClient, version: ModelVersion) -> list[str]:
    """Delete the tags about its last scoring that earlier releases wrote on ``version``
    (the scoring's runs hold its history now); the keys deleted."""
    stale = sorted(key for key in version.tags if key.startswith(STALE_VERSION_TAGS))
    for key in stale:
        try:
            client.delete_model_version_tag(version.name, str(version.version), key)
        except MlflowException as exc:  # deleted meanwhile by a scoring beside this one
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
    return stale


def dataset_entity(read: ScoringInput) -> DatasetEntity:
    """The input as an MLflow dataset: its path and SHA-256 (shortened to MLflow's digest)."""
    return file_dataset(read.path.resolve(), read.path.name, read.sha256[:DIGEST_CHARS])


def log_scoring(
    client: MlflowClient,
    run_id: str,
    version: ModelVersion,
    model_id: str | None,
    read: ScoringInput,
    metrics: Mapping[str, float | None],
    files: Path,
    tags: Mapping[str, str] | None = None,
) -> None:
    """Everything about one scoring on its run: params, inputs, metrics (linked to the
    version's logged model ``model_id`` and the input), ``tags``, the files."""
    dataset = dataset_entity(read)
    client.log_batch(
        run_id,
        params=[
            Param(key, str(value))
            for key, value in {
                "model.name": version.name,
                "model.version": version.version,
                "model.id": model_id or "",
                "input.path": str(read.path),
                "input.kind": read.kind,
                "input.sha256": read.sha256,
                "input.rows": read.rows_read,
            }.items()
        ],
    )
    client.log_inputs(
        run_id,
        datasets=[dataset_input(dataset, "scoring")],
        models=[LoggedModelInput(model_id)] if model_id else None,
    )
    stamp = int(time.time() * 1000)
    link = {"model_id": model_id, "dataset_name": dataset.name, "dataset_digest": dataset.digest}
    client.log_batch(
        run_id,
        metrics=[
            Metric(key, float(value), stamp, 0, **link)
            for key, value in metrics.items()
            if value is not None and not math.isnan(value)
        ],
    )
    for key, value in (tags or {}).items():
        client.set_tag(run_id, key, value)
    client.log_artifacts(run_id, str(files))
