"""What a served model sees and answers for a set of inputs, row by row: the record that a
reference profile holds for held-out data and that drift compares a window against.

Answers (predicted class, confidence) come from the served answers already computed; the
input statistics, the entropy and the last hidden layer come from one extra pass over a
sample of at most ``SAMPLE_ROWS`` rows through the served model's own preprocessing
(its ``last_hidden`` accessor).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from keras_variants.model.calibration import predictive_entropy
from keras_variants.monitoring.features import digit_features, review_features
from keras_variants.serving.answers import ServedModel, Stored, classes_and_confidence

# The largest window the detectors are measured on: new data is sampled down to it, so the
# measured detection and false-alarm rates apply to every scoring.
SAMPLE_ROWS = 1_000


@dataclass(frozen=True)
class Observed:
    """Per row of a sample: input ``features``, predicted ``classes``, ``confidence`` (the
    probability of the predicted class), ``entropy`` (nats) and ``hidden`` activations."""

    features: dict[str, np.ndarray]
    classes: np.ndarray
    confidence: np.ndarray
    entropy: np.ndarray
    hidden: np.ndarray
    extra: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.classes)

    def take(self, rows: np.ndarray) -> Observed:
        return Observed(
            {name: values[rows] for name, values in self.features.items()},
            self.classes[rows],
            self.confidence[rows],
            self.entropy[rows],
            self.hidden[rows],
        )


def observe(
    served: ServedModel,
    inputs: Sequence[str],
    predictions: pd.DataFrame | None = None,
    stored: Stored | None = None,
) -> Observed:
    """Observe ``inputs`` (as sent to ``predict``) and their served answers ``predictions``,
    every row: callers sample first (the extra pass costs a model call per row). Each input
    is decoded once (``stored_inputs``, ``predict``'s own preprocessing; ``stored``: what
    ``predict_stored`` decoded them into already) and goes through the model once; without
    ``predictions`` the answers are that pass's (the known shifts: the same model,
    preprocessing and probabilities as ``predict``, without a second pass)."""
    dataset = served.variant.dataset
    if stored is None:
        stored = served.stored_inputs(list(inputs))
    hidden, probabilities = served.stored_hidden(stored)
    if predictions is None:
        classes, confidence = probabilities.argmax(axis=1), probabilities.max(axis=1)
    else:
        classes, confidence = classes_and_confidence(dataset, predictions)
    features = input_features(served, inputs, stored)
    return Observed(features, classes, confidence, predictive_entropy(probabilities), hidden)


def input_features(
    served: ServedModel, inputs: Sequence[str], stored: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """The input statistics of :mod:`~keras_variants.monitoring.features` per input (as sent
    to ``predict``), the ones a reference profile holds: a review's from its text and the
    model's word index, a digit's from the pixels the model sees (``stored``, or decoded by
    ``predict``'s own preprocessing). What ``variants serve --log-predictions`` records."""
    if served.variant.dataset == "imdb":
        return review_features(inputs, served.word_index)
    return digit_features(served.stored_inputs(list(inputs)) if stored is None else stored)


def sample_rows(rows: int, rng: np.random.Generator, limit: int = SAMPLE_ROWS) -> np.ndarray:
    """Sorted positions of at most ``limit`` of ``rows`` rows, drawn without replacement."""
    if rows <= limit:
        return np.arange(rows)
    return np.sort(rng.choice(rows, limit, replace=False))
