"""Skipping unchanged work: what makes two trainings the same, as a key.

A trial's key covers every input of its training: the data files' SHA-256, the source of
the code that reads, encodes, builds, trains, evaluates and packages the model (the
training module and everything it imports, derived, not listed), the variant's settings
(sweep values included), the seed, the profile and the protocol (whose validation rows
differ). A finished run with the same key is reused instead of trained again; any change
retrains only the trials whose key it changes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping

from keras_variants.code_digest import code_digest
from keras_variants.config.pipeline import PipelineConfig, Profile
from keras_variants.config.trials import Trial
from keras_variants.config.variants import VariantConfig

TRIAL_KEY_TAG = "keras_variants.trial_key"
REUSED_FROM_TAG = "keras_variants.reused_from"
# The module that trains, evaluates and saves a trial: the trial key covers its code and
# the code of every module it imports (keras_variants.code_digest).
TRAINING = "keras_variants.lanes.jobs"


def trial_key(
    variant: VariantConfig,
    seed: int,
    profile: Profile,
    fingerprints: Mapping[str, str],
    code: str,
    settings: Mapping[str, object] | None = None,
) -> str:
    """The key of one training. ``code`` is ``code_digest(TRAINING)``; ``settings`` holds
    any other option that changes the numbers (such as the numeric precision).

    Equal keys, equal results up to float rounding: where the training runs (a lane
    process, a thread, a Dask worker) and how many threads TensorFlow uses change the last
    digits of the numbers but not the key, so a run reuses a trial trained by another
    runner."""
    document = {
        "variant": variant.model_dump(mode="json"),
        "seed": seed,
        "profile": profile.model_dump(mode="json"),
        "data": dict(sorted(fingerprints.items())),
        "code": code,
        "settings": dict(sorted((settings or {}).items())),
    }
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()


def trial_key_for(
    config: PipelineConfig, trial: Trial, fingerprints: Mapping[str, str], precision: str
) -> str:
    """The key of ``trial`` in a run of ``config`` on data with ``fingerprints``, trained
    at ``precision`` (as :func:`keras_variants.model.precision.resolve_precision` chose it)."""
    return trial_key(
        trial.variant,
        trial.seed,
        config.profile,
        fingerprints,
        code_digest(TRAINING),
        # The protocol also sets the profile's validation rows; named here so that a book
        # protocol run never reuses a lecture protocol trial, whatever the profile holds.
        {"precision": precision, "protocol": config.protocol},
    )
