"""Skipping unchanged work: what makes two trainings the same, as a key.

A trial's key covers every input of its training: the data files' SHA-256, the source of
the code that reads, encodes, builds, trains, evaluates and packages the model, the
variant's settings (sweep values included), the seed and the profile. A finished run with
the same key is reused instead of trained again; any change retrains only the trials whose
key it changes.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from collections.abc import Mapping
from pathlib import Path

from keras_variants.config.pipeline import Profile
from keras_variants.config.variants import VariantConfig

TRIAL_KEY_TAG = "keras_variants.trial_key"
REUSED_FROM_TAG = "keras_variants.reused_from"
# The modules whose code decides what a trained model and its metrics are.
TRAINING_CODE = (
    "keras_variants.config.variants",
    "keras_variants.config.pipeline",
    "keras_variants.config.trials",
    "keras_variants.data.datasets",
    "keras_variants.data.npz",
    "keras_variants.data.ragged",
    "keras_variants.data.preprocessing",
    "keras_variants.model.builders",
    "keras_variants.model.training",
    "keras_variants.model.calibration",
    "keras_variants.model.inference",
    "keras_variants.model.uncertainty",
    "keras_variants.lanes.jobs",  # splits, callbacks and the saved model of a trial
    "keras_variants.serving.pyfunc",
)


def source_digest(*modules: str) -> str:
    """SHA-256 of the modules' source files, read without importing them."""
    digest = hashlib.sha256()
    for module in modules:
        digest.update(Path(importlib.util.find_spec(module).origin).read_bytes())
    return digest.hexdigest()


def trial_key(
    variant: VariantConfig,
    seed: int,
    profile: Profile,
    fingerprints: Mapping[str, str],
    code: str,
    settings: Mapping[str, object] | None = None,
) -> str:
    """The key of one training: equal keys, equal results. ``code`` is
    ``source_digest(*TRAINING_CODE)``; ``settings`` holds any other option that changes
    the numbers (such as the numeric precision)."""
    document = {
        "variant": variant.model_dump(mode="json"),
        "seed": seed,
        "profile": profile.model_dump(mode="json"),
        "data": dict(sorted(fingerprints.items())),
        "code": code,
        "settings": dict(sorted((settings or {}).items())),
    }
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()
