"""Where a registered version's reference profile and the measurement of its monitors are
kept: the files logged with the version's run, the tags that point at them and the
profile's SHA-256. Plain JSON and MLflow, so that the gate storing them and the report
reading the measurement load none of the statistics (SciPy, pandas)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from mlflow.entities.model_registry import ModelVersion
from mlflow.tracking import MlflowClient

from keras_variants.data.npz import sha256_of

PROFILE_TAG, PROFILE_SHA_TAG = "monitoring.profile", "monitoring.profile_sha256"
PROFILE_FILE, MEASUREMENT_FILE = "profile.npz", "monitoring.json"


def store_profile(
    client: MlflowClient, name: str, version: str, profile: bytes, measurement: dict[str, Any]
) -> str:
    """Log ``profile`` and ``measurement`` with version ``version`` of ``name`` and tag the
    version with their place and the profile's SHA-256; that digest."""
    run_id = client.get_model_version(name, version).run_id
    folder = f"monitoring/v{version}"
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / PROFILE_FILE).write_bytes(profile)
        (Path(tmp) / MEASUREMENT_FILE).write_text(json.dumps(measurement, indent=1))
        client.log_artifacts(run_id, tmp, folder)
    digest = sha256_of(profile)
    client.set_model_version_tag(name, version, PROFILE_TAG, f"{folder}/{PROFILE_FILE}")
    client.set_model_version_tag(name, version, PROFILE_SHA_TAG, digest)
    return digest


def download(client: MlflowClient, run_id: str, path: str) -> bytes:
    """The bytes of the artifact ``path`` of run ``run_id``."""
    with tempfile.TemporaryDirectory() as tmp:
        local = client.download_artifacts(run_id, path, tmp)
        return Path(local).read_bytes()


def load_measurement(client: MlflowClient, version: ModelVersion) -> dict[str, Any] | None:
    """The version's measurement on the known shifts, if it has one."""
    path = version.tags.get(PROFILE_TAG)
    if not path:
        return None
    return json.loads(
        download(client, version.run_id, path.rsplit("/", 1)[0] + "/" + MEASUREMENT_FILE)
    )
