"""A registered version's reference profile: what it saw and answered on held-out data
through the served path, written when it is registered and stored with the version.

Stored as ``profile.npz`` (and the measurement on the known shifts as ``monitoring.json``)
among the artifacts of the version's run, under ``monitoring/v<version>/``; the version's
tags ``monitoring.profile`` and ``monitoring.profile_sha256`` point at it and fingerprint
it, and a profile whose bytes do not match is refused.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from mlflow.entities.model_registry import ModelVersion
from mlflow.tracking import MlflowClient

from keras_variants.data.npz import sha256_of
from keras_variants.errors import VariantsError
from keras_variants.monitoring import estimate
from keras_variants.monitoring.estimate import Estimators
from keras_variants.monitoring.features import word_histogram
from keras_variants.monitoring.observe import Observed, observe, sample_rows
from keras_variants.monitoring.signals import bandwidth
from keras_variants.monitoring.stored import PROFILE_SHA_TAG, PROFILE_TAG, download
from keras_variants.serving.answers import CLASS_NAMES, ServedModel, classes_and_confidence


@dataclass(frozen=True)
class Profile:
    """The reference: an :class:`Observed` sample of held-out rows, the predicted-class
    counts and confidences of all of them, the fitted accuracy estimators, the settings
    the measurement chose (``alpha``, ``estimator``, ``expected_error`` per window size)
    and, for reviews, the word-frequency histogram."""

    dataset: str
    reference: Observed
    class_counts: np.ndarray
    estimators: Estimators
    accuracy: float  # on the held-out rows
    rows: int
    alpha: float = 0.05
    estimator: str = "atc"
    expected_error: dict[int, float] = field(default_factory=dict)
    bandwidth: float = 1.0
    word_histogram: np.ndarray | None = None

    def to_bytes(self) -> bytes:
        meta = {
            "dataset": self.dataset,
            "accuracy": self.accuracy,
            "rows": self.rows,
            "alpha": self.alpha,
            "estimator": self.estimator,
            "expected_error": {str(k): v for k, v in self.expected_error.items()},
            "bandwidth": self.bandwidth,
            "atc_threshold": self.estimators.atc_threshold,
            "atc_tie_share": self.estimators.atc_tie_share,
            "features": sorted(self.reference.features),
        }
        arrays = {f"feature_{k}": v for k, v in self.reference.features.items()}
        arrays |= {
            "classes": self.reference.classes,
            "confidence": self.reference.confidence,
            "entropy": self.reference.entropy,
            "hidden": self.reference.hidden,
            "class_counts": self.class_counts,
            "bin_edges": self.estimators.bin_edges,
            "bin_accuracy": self.estimators.bin_accuracy,
        }
        if self.word_histogram is not None:
            arrays["word_histogram"] = self.word_histogram
        buffer = io.BytesIO()
        np.savez_compressed(buffer, meta=np.array(json.dumps(meta)), **arrays)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> Profile:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            meta = json.loads(str(npz["meta"]))
            reference = Observed(
                {k: npz[f"feature_{k}"] for k in meta["features"]},
                npz["classes"],
                npz["confidence"],
                npz["entropy"],
                npz["hidden"],
            )
            estimators = Estimators(
                meta["atc_threshold"], meta["atc_tie_share"], npz["bin_edges"], npz["bin_accuracy"]
            )
            return cls(
                meta["dataset"],
                reference,
                npz["class_counts"],
                estimators,
                meta["accuracy"],
                meta["rows"],
                meta["alpha"],
                meta["estimator"],
                {int(k): v for k, v in meta["expected_error"].items()},
                meta["bandwidth"],
                npz["word_histogram"] if "word_histogram" in npz.files else None,
            )


def build_profile(
    served: ServedModel,
    inputs: list[str],
    predictions: pd.DataFrame,
    labels: np.ndarray,
    seed: int,
    sampled: tuple[np.ndarray, Observed] | None = None,
    **settings: Any,
) -> Profile:
    """The profile of held-out ``inputs`` with their served answers ``predictions`` (a
    frame, one row each) and true ``labels``: answers and estimators over every row, the
    rest over a seeded sample of at most 1,000 rows, or over ``sampled`` (positions in
    ``inputs`` and their :class:`Observed`, already observed). ``settings``: Profile's
    ``alpha``, ``estimator``, ``expected_error`` when measured."""
    dataset = served.variant.dataset
    if sampled is None:
        rows = sample_rows(len(inputs), np.random.default_rng(seed))
        reference = observe(served, [inputs[i] for i in rows], predictions.iloc[rows])
    else:
        rows, reference = sampled
    sample = [inputs[i] for i in rows]
    return Profile(
        dataset=dataset,
        reference=reference,
        **answered(dataset, predictions, labels),
        bandwidth=bandwidth(reference.hidden),
        word_histogram=word_histogram(sample, served.word_index) if dataset == "imdb" else None,
        **settings,
    )


def answered(dataset: str, predictions: pd.DataFrame, labels: np.ndarray) -> dict[str, Any]:
    """The parts of a profile made from every held-out row's served answer and true label:
    ``class_counts``, ``estimators``, ``accuracy``, ``rows``."""
    classes, confidence = classes_and_confidence(dataset, predictions)
    correct = classes == np.asarray(labels)
    num_classes = len(CLASS_NAMES[dataset])
    return {
        "class_counts": np.bincount(classes, minlength=num_classes)[:num_classes],
        "estimators": estimate.fit(confidence, correct),
        "accuracy": float(np.mean(correct)),
        "rows": len(classes),
    }


def load_profile(client: MlflowClient, version: ModelVersion) -> Profile | None:
    """The version's profile; None when it has none (registered before profiles existed).
    Raises VariantsError when the stored bytes do not match the recorded SHA-256."""
    path = version.tags.get(PROFILE_TAG)
    if not path:
        return None
    data = download(client, version.run_id, path)
    if sha256_of(data) != version.tags.get(PROFILE_SHA_TAG):
        raise VariantsError(
            f"{version.name} v{version.version}: its reference profile does not match the "
            "SHA-256 recorded at registration; it was changed: register the model again"
        )
    return Profile.from_bytes(data)
