"""A registered version's reference profile, which its drift checks compare with: built by
the gate from the version's served answers to the test inputs (with the measurement of its
monitors on the known shifts) and stored with the version
(:mod:`keras_variants.monitoring.stored`).

A version without a readable profile, because building or storing it failed or because it
was registered before profiles existed, cannot be checked for drift. The gate never makes
such a version champion, and a rollback never makes it champion again: monitoring never
switches off silently.
"""

from __future__ import annotations

import numpy as np
from mlflow.tracking import MlflowClient

from keras_variants.data.npz import sha256_of
from keras_variants.lanes.call import Call
from keras_variants.monitoring.stored import PROFILE_SHA_TAG, PROFILE_TAG, download, store_profile
from keras_variants.registry.gate_memo import remember
from keras_variants.registry.loading import verified_path
from keras_variants.registry.served_accuracy import ServedAccuracy, score_and_profile

NEVER_UNMONITORED = "a version whose drift cannot be checked is never made champion"


def build_profile(
    client: MlflowClient,
    name: str,
    version: str,
    scorer: ServedAccuracy,
    seed: int,
    call: Call,
    store: bool = True,
) -> np.ndarray:
    """Score the version through the served path once (through ``call``): whether it is
    right on each test input, and from the same answers its reference profile. With
    ``store``, the profile and measurement are stored with the version and the answers
    remembered for the gate. Raises whatever failed."""
    correct, profile, measurement = call(
        score_and_profile, verified_path(client, name, version), scorer, seed
    )
    correct = np.asarray(correct, bool)
    if store:
        store_profile(client, name, version, profile, measurement)
        remember(client, name, version, scorer.key, correct)
    return correct


def unmonitored(client: MlflowClient, name: str, version: str) -> str | None:
    """Why the version's drift cannot be checked, in words; None when its reference
    profile is stored and is the one recorded with it."""
    found = client.get_model_version(name, version)
    path, recorded = found.tags.get(PROFILE_TAG), found.tags.get(PROFILE_SHA_TAG)
    if not path or not recorded:
        return (
            "it has no reference profile (building it failed, or it was registered before "
            "profiles were)"
        )
    try:
        stored = download(client, found.run_id, path)
    except Exception as exc:
        return f"its reference profile {path} cannot be read ({type(exc).__name__}: {exc})"
    if sha256_of(stored) != recorded:
        return f"its reference profile {path} is not the one recorded with it (SHA-256 differs)"
    return None
