"""Loading a registered version: which version an alias or number names, and its served
model, loaded only if its files are the files registered.

The one way the gate, ``variants predict``, ``variants score`` and ``variants serve`` load a
registered model: :func:`verified_path` compares the SHA-256 of every file of the version's
folder with those recorded at registration (:mod:`keras_variants.registry.integrity`)
before anything in it is read by MLflow, Python or Keras. Models are saved as code, so
nothing is unpickled (:mod:`keras_variants.serving.saving`).
"""

from __future__ import annotations

from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from keras_variants.errors import VariantsError
from keras_variants.registry import integrity
from keras_variants.registry.versions import (
    REGISTERED_MODELS,
    artifact_text,
    model_path,
    record_digests,
)
from keras_variants.serving.saving import load_served


def resolve_version(
    client: MlflowClient, name: str, alias: str | None = None, version: str | None = None
) -> str:
    """The version number that ``version`` or ``alias`` (default: champion) names, checked
    to exist; an unknown model, alias or version is an error saying what to pass."""
    if name not in REGISTERED_MODELS.values():
        raise VariantsError(
            f"unknown model {name!r}; choose from {', '.join(REGISTERED_MODELS.values())}"
        )
    if version is not None:
        try:
            return str(client.get_model_version(name, version).version)
        except MlflowException:
            raise VariantsError(
                f"{name} has no version {version} in {client.tracking_uri}; the MLflow UI "
                "lists its versions"
            ) from None
    alias = alias or "champion"
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        raise VariantsError(
            f"{name} has no '{alias}' in {client.tracking_uri}; run 'variants run' first, "
            "or pass --version N"
        ) from None


def verified_path(client: MlflowClient, name: str, version: str) -> str:
    """The local folder of a registered version, once every file in it is the file
    registered; a changed, added or missing file (or no record) is one error naming it."""
    found = client.get_model_version(name, version)
    recorded = found.tags.get(integrity.FILES_TAG)
    if recorded is None:
        raise VariantsError(
            f"{name} v{version} has no file hashes recorded (registered before they were), "
            "so its files cannot be checked; refusing to load it. If its files are as you "
            f"registered them: variants trust --model {name} --version {version}"
        )
    folder = model_path(client, name, version)
    digests = integrity.file_digests(Path(folder))
    if integrity.matches(recorded, digests):
        return folder
    stored = None
    if found.run_id and not integrity.is_table(recorded):
        stored = artifact_text(client, found.run_id, integrity.manifest_path(recorded))
    manifest = integrity.manifest_of(recorded, stored)
    problem = (manifest is not None and integrity.first_difference(manifest, digests)) or (
        "its files are not the files registered (and the record of which file is which is "
        "missing or changed too)"
    )
    remedy = "restore the file or register the model again"
    if problem.startswith("__pycache__/"):  # runs instead of the checked code file
        remedy = (
            "if a load outside variants wrote it (mlflow models serve without "
            "PYTHONDONTWRITEBYTECODE=1), delete that __pycache__ folder"
        )
    raise VariantsError(
        f"{name} v{version}: {problem} since it was registered (in {folder}); refusing "
        f"to load it: {remedy}"
    )


def trust(client: MlflowClient, name: str, version: str) -> int:
    """Record the SHA-256 of the files of a version registered before hashes were recorded,
    as they are now (the user vouches for them); from then on they are checked like any
    other. A version with hashes keeps them: it is never re-recorded. The number of files."""
    found = client.get_model_version(name, version)
    if integrity.FILES_TAG in found.tags:
        raise VariantsError(
            f"{name} v{version} has its file hashes from registration already; nothing to "
            "trust. If a file changed, restore it or register the model again"
        )
    digests = integrity.file_digests(Path(model_path(client, name, version)))
    tags = record_digests(client, digests, found.run_id or None)
    client.set_model_version_tag(name, version, integrity.FILES_TAG, tags[integrity.FILES_TAG])
    return len(digests)


def load_version(client: MlflowClient, name: str, version: str) -> mlflow.pyfunc.PyFuncModel:
    """A registered version's served model, read from this client's store once its files
    are verified."""
    return load_served(verified_path(client, name, version))


def logged_model_id(client: MlflowClient, name: str, version: str) -> str | None:
    """The id of the logged model a version was registered from (a SQLite store keeps no
    model id on the version: then from its source, ``models:/<id>``, or for versions
    registered from a location, ``.../models/<id>/artifacts``)."""
    found = client.get_model_version(name, version)
    if found.model_id:
        return found.model_id
    if found.source.startswith("models:/") and "/" not in found.source[8:]:
        return found.source[8:]  # registered from the logged model: models:/<id>
    parts = found.source.rstrip("/").split("/")
    return parts[-2] if len(parts) > 2 and parts[-3] == "models" else None
