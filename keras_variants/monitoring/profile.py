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
from keras_variants.monitoring import estimate, label_shift
from keras_variants.monitoring.estimate import Estimators
from keras_variants.monitoring.features import word_histogram
from keras_variants.monitoring.interval import Envelope
from keras_variants.monitoring.observe import Observed, observe, sample_rows
from keras_variants.monitoring.signals import MMD_ROWS, bandwidth
from keras_variants.monitoring.stored import PROFILE_SHA_TAG, PROFILE_TAG, download
from keras_variants.serving.answers import CLASS_NAMES, ServedModel, classes_and_confidence


@dataclass(frozen=True)
class HeldOut:
    """Every held-out row's served answer and true label: what the accuracy estimators are
    fitted on, again for each re-mix of the classes (:mod:`.label_shift`)."""

    confidence: np.ndarray
    classes: np.ndarray
    labels: np.ndarray

    @property
    def correct(self) -> np.ndarray:
        return self.classes == self.labels

    def confusion(self, num_classes: int) -> np.ndarray:
        return label_shift.confusion(self.classes, self.labels, num_classes)


@dataclass(frozen=True)
class Profile:
    """The reference: an :class:`Observed` sample of held-out rows with their true
    ``reference_labels``, every held-out row's answer and label (``held_out``), the
    predicted-class counts, the fitted accuracy estimators, what the measurement on the
    known shifts chose (``alpha``, ``estimator``: whose intervals held; ``point_estimator``:
    whose estimate is printed inside them) and calibrated (``envelopes``: the accuracy
    estimate's interval per window size, :mod:`.interval`), and, for reviews, the
    word-frequency histogram."""

    dataset: str
    reference: Observed
    reference_labels: np.ndarray
    held_out: HeldOut
    class_counts: np.ndarray
    estimators: Estimators
    accuracy: float  # on the held-out rows
    rows: int
    alpha: float = 0.05
    estimator: str = "atc"
    envelopes: dict[int, Envelope] = field(default_factory=dict)
    bandwidth: float = 1.0
    word_histogram: np.ndarray | None = None
    point_estimator: str | None = None  # the estimate printed inside the interval (None: estimator)

    def distance_rows(self) -> np.ndarray:
        """The reference rows the embedding's distance is measured from: a fixed random
        ``MMD_ROWS`` of the sample (the sample is in the data's order)."""
        order = np.random.default_rng(0).permutation(len(self.reference))
        return np.sort(order[:MMD_ROWS])

    def to_bytes(self) -> bytes:
        meta = {
            "dataset": self.dataset,
            "accuracy": self.accuracy,
            "rows": self.rows,
            "alpha": self.alpha,
            "estimator": self.estimator,
            "point_estimator": self.point_estimator,
            "envelopes": {str(k): v.as_dict() for k, v in self.envelopes.items()},
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
            "reference_labels": self.reference_labels.astype(np.int16),
            "held_out_confidence": self.held_out.confidence.astype(np.float32),
            "held_out_classes": self.held_out.classes.astype(np.int16),
            "held_out_labels": self.held_out.labels.astype(np.int16),
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
        """A stored profile; one written before intervals were calibrated has no
        envelopes (its estimates are withheld) and no held-out answers."""
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
            files = set(npz.files)
            empty = np.zeros(0, np.int64)
            held_out = HeldOut(
                *(
                    npz[f"held_out_{k}"].astype(t) if f"held_out_{k}" in files else empty
                    for k, t in (("confidence", np.float64), ("classes", np.int64),
                                 ("labels", np.int64))
                )
            )  # fmt: skip
            return cls(
                meta["dataset"],
                reference,
                npz["reference_labels"].astype(np.int64)
                if "reference_labels" in files
                else np.full(len(reference), -1),
                held_out,
                npz["class_counts"],
                estimators,
                meta["accuracy"],
                meta["rows"],
                meta["alpha"],
                meta["estimator"],
                {int(k): Envelope.from_dict(v) for k, v in meta.get("envelopes", {}).items()},
                meta["bandwidth"],
                npz["word_histogram"] if "word_histogram" in files else None,
                meta.get("point_estimator"),  # measured since 2026-12-07
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
    ``alpha``, ``estimator``, ``envelopes`` when measured."""
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
        reference_labels=np.asarray(labels)[rows],
        **answered(dataset, predictions, labels),
        bandwidth=bandwidth(reference.hidden),
        word_histogram=word_histogram(sample, served.word_index) if dataset == "imdb" else None,
        **settings,
    )


def answered(dataset: str, predictions: pd.DataFrame, labels: np.ndarray) -> dict[str, Any]:
    """The parts of a profile made from every held-out row's served answer and true label:
    ``held_out``, ``class_counts``, ``estimators``, ``accuracy``, ``rows``."""
    classes, confidence = classes_and_confidence(dataset, predictions)
    labels = np.asarray(labels)
    correct = classes == labels
    num_classes = len(CLASS_NAMES[dataset])
    return {
        "held_out": HeldOut(np.asarray(confidence, np.float64), classes, labels),
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
