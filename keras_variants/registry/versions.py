"""Registered versions in the MLflow model registry: registering a run's model, finding a
version's folder, its aliases, and the decisions recorded on versions.

MLflow only, no TensorFlow. Promotion itself is decided in :mod:`keras_variants.registry.gate`.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import mlflow
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.file_utils import local_file_uri_to_path
from mlflow.utils.mlflow_tags import MLFLOW_MODEL_VERSIONS

from keras_variants import compat
from keras_variants.errors import VariantsError
from keras_variants.registry import integrity
from keras_variants.registry.model_card_store import try_write_card
from keras_variants.tracking.records import VariantRecord

REGISTERED_MODELS = {"mnist": "mnist-classifier", "imdb": "imdb-sentiment"}
FILTER_METRICS = ("test/accuracy", "test/loss", "test/auc", "val/accuracy")


def register_challenger(client: MlflowClient, record: VariantRecord) -> str:
    """Register ``record``'s model as a new version aliased ``challenger``, with its model
    card (:mod:`keras_variants.registry.model_card`); its version."""
    name = REGISTERED_MODELS[record.dataset]
    model_id = logged_model_id(client, record)
    tags = {
        "variant": record.variant,
        "run_id": record.run_id,
        "git_commit": record.tags.get("git_commit", "unknown"),
        "profile": record.tags.get("profile", ""),
        # The headline numbers a person filters versions on; every other measure is on the
        # run and in the model card, not in a row of tags on the version's page.
        **{k: f"{record.metrics[k]:.6g}" for k in FILTER_METRICS if k in record.metrics},
        **{k: v for k, v in record.tags.items() if k.startswith("data.")},
    }
    try:
        client.create_registered_model(name, description=f"Best {record.dataset} variant.")
    except MlflowException:
        client.get_registered_model(name)  # it exists (perhaps created a moment ago): fine
    location = client.get_logged_model(model_id).artifact_location
    tags |= files_record(client, location, record.run_id)
    version = _register_logged_model(client, name, model_id, record.run_id, tags)
    client.set_registered_model_alias(name, "challenger", version.version)
    try_write_card(client, name, str(version.version))
    return str(version.version)


def files_record(client: MlflowClient, source: str, run_id: str | None = None) -> dict[str, str]:
    """The version tag that records the SHA-256 of every file at ``source``, written at
    registration and checked before every load (:mod:`keras_variants.registry.loading`):
    the digest of their manifest, which is kept in ``run_id``'s artifacts
    (:mod:`keras_variants.registry.integrity`); with no run, the manifest itself."""
    return record_digests(client, integrity.file_digests(Path(folder_of(client, source))), run_id)


def record_digests(
    client: MlflowClient, digests: dict[str, str], run_id: str | None
) -> dict[str, str]:
    """:func:`files_record` of file digests already read."""
    if run_id is None:
        return {integrity.FILES_TAG: integrity.encode(digests)}
    recorded = integrity.record(digests)
    client.log_text(run_id, integrity.encode(digests), integrity.manifest_path(recorded))
    return {integrity.FILES_TAG: recorded}


def _register_logged_model(
    client: MlflowClient, name: str, model_id: str, run_id: str, tags: dict[str, str]
) -> ModelVersion:
    """A new version of ``name`` from the logged model ``model_id`` (source
    ``models:/<model_id>``, so the UI links version and logged model both ways).

    A tracking server resolves that source in its own store. A local store resolves it
    through MLflow's process-wide tracking URI (which this package never sets), so here the
    version is created from the logged model's location and then given the source a server
    would have recorded; the download location stays the logged model's folder.
    """
    source = f"models:/{model_id}"
    if compat.registry_uri(client).startswith(("http:", "https:")):
        return client.create_model_version(name, source, run_id, tags, model_id=model_id)
    location = client.get_logged_model(model_id).artifact_location
    version = client.create_model_version(name, location, run_id, tags, model_id=model_id)
    compat.set_model_version_source(client, name, version.version, source)
    linked = json.loads(client.get_logged_model(model_id).tags.get(MLFLOW_MODEL_VERSIONS, "[]"))
    linked.append({"name": name, "version": str(version.version)})
    client.set_logged_model_tags(model_id, {MLFLOW_MODEL_VERSIONS: json.dumps(linked)})
    return client.get_model_version(name, version.version)


def model_path(client: MlflowClient, name: str, version: str) -> str:
    """The local folder of a registered version's served model (downloaded from a remote
    store), unverified: loaders use :func:`keras_variants.registry.loading.verified_path`."""
    return folder_of(client, client.get_model_version_download_uri(name, version))


def folder_of(client: MlflowClient, source: str) -> str:
    """The local folder of a model location (downloaded from a remote store)."""
    if source.startswith("file:"):
        return local_file_uri_to_path(source)
    return mlflow.artifacts.download_artifacts(
        artifact_uri=source, tracking_uri=client.tracking_uri
    )


def artifact_text(client: MlflowClient, run_id: str, path: str) -> str | None:
    """The text of the artifact ``path`` of ``run_id``, or None if it is not there."""
    try:
        with tempfile.TemporaryDirectory() as folder:
            return Path(client.download_artifacts(run_id, path, folder)).read_text()
    except (MlflowException, OSError):
        return None


def alias_version(client: MlflowClient, name: str, alias: str) -> str | None:
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def decisions_for(client: MlflowClient, run_ids: set[str]) -> list[str]:
    """The recorded registry decisions about versions that came from ``run_ids``."""
    sentences = []
    for name in REGISTERED_MODELS.values():
        for version in client.search_model_versions(f"name = '{name}'"):
            tags = version.tags
            if tags.get("run_id") in run_ids and "promotion.decision" in tags:
                sentences.append(
                    f"{name} v{version.version} ({tags.get('variant')}): "
                    f"{tags['promotion.decision']}: {tags.get('promotion.reason', '')}"
                )
    return sentences


def logged_model_id(client: MlflowClient, record: VariantRecord) -> str:
    run = client.get_run(record.run_id)
    if not run.outputs or not run.outputs.model_outputs:
        raise VariantsError(f"run {record.run_id} ({record.variant}) has no logged model")
    return run.outputs.model_outputs[0].model_id


def version_of_model(client: MlflowClient, name: str, model_id: str) -> str | None:
    """The version of ``name`` registered from the logged model ``model_id``, if any (by
    its source: a SQLite store does not keep a version's model id; versions registered
    before sources were ``models:/<model_id>`` have the model's location)."""
    sources = {f"models:/{model_id}", client.get_logged_model(model_id).artifact_location}
    for version in client.search_model_versions(f"name = '{name}'"):
        if version.source in sources:
            return str(version.version)
    return None
