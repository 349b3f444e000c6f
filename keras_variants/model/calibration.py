"""Calibration of class probabilities: how far a model's probabilities can be trusted.

Top-label expected calibration error over 15 equal-width bins and its reliability diagram,
Brier score, negative log-likelihood, predictive entropy. Plain functions over NumPy arrays.
Class probabilities are ``(N, C)`` float64 rows throughout; a sigmoid output ``p`` is the
two classes ``[1 - p, p]`` (:func:`class_probabilities`). Entropies are in nats.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats
from sklearn.metrics import brier_score_loss, log_loss

ECE_BINS = 15


def class_probabilities(outputs: Any) -> np.ndarray:
    """(N, C) float64 rows that sum to 1 from a model's outputs: softmax rows as they are
    (renormalized in float64), a sigmoid column ``p`` as ``[1 - p, p]``."""
    p = np.asarray(outputs, dtype=np.float64)
    p = p.reshape(len(p), -1)
    if p.shape[1] == 1:
        p = np.hstack([1.0 - p, p])
    return p / p.sum(axis=1, keepdims=True)


def _bins(
    labels: np.ndarray, probabilities: np.ndarray, bins: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per top-label confidence bin ``(edge_i, edge_i+1]`` (the first one closed): row
    count, mean confidence and accuracy (NaN where empty)."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == np.asarray(labels)
    inner = np.linspace(0.0, 1.0, bins + 1)[1:-1]
    index = np.digitize(confidence, inner, right=True)
    count = np.bincount(index, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.bincount(index, confidence, bins) / count
        accuracy = np.bincount(index, correct.astype(np.float64), bins) / count
    return count, mean_confidence, accuracy


def expected_calibration_error(
    labels: np.ndarray, probabilities: np.ndarray, bins: int = ECE_BINS
) -> float:
    """Top-label ECE: sum over equal-width confidence bins of (rows in bin / N) times
    |accuracy - mean confidence| in the bin (Guo et al., 2017)."""
    count, confidence, accuracy = _bins(labels, probabilities, bins)
    filled = count > 0
    gaps = np.abs(accuracy[filled] - confidence[filled])
    return float((count[filled] * gaps).sum() / count.sum())


def reliability_diagram(
    labels: np.ndarray, probabilities: np.ndarray, bins: int = ECE_BINS
) -> dict[str, list]:
    """The bins behind :func:`expected_calibration_error`, as JSON: ``bin_edges`` (bins + 1),
    and per bin ``confidence`` and ``accuracy`` (null where empty) and ``count``."""
    count, confidence, accuracy = _bins(labels, probabilities, bins)

    def values(a: np.ndarray) -> list[float | None]:
        return [None if n == 0 else float(v) for v, n in zip(a, count, strict=True)]

    return {
        "bin_edges": np.linspace(0.0, 1.0, bins + 1).tolist(),
        "confidence": values(confidence),
        "accuracy": values(accuracy),
        "count": count.tolist(),
    }


def brier_score(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """scikit-learn's Brier score: for two classes the mean squared error of the positive
    probability (0-1); for more, the squared error summed over classes (0-2)."""
    classes = probabilities.shape[1]
    if classes == 2:
        return float(brier_score_loss(labels, probabilities[:, 1], pos_label=1))
    return float(brier_score_loss(labels, probabilities, labels=list(range(classes))))


def negative_log_likelihood(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """Mean -log p(true class) (scikit-learn's log loss, probabilities clipped at float64
    precision)."""
    return float(log_loss(labels, probabilities, labels=list(range(probabilities.shape[1]))))


def calibration_metrics(labels: np.ndarray, probabilities: np.ndarray) -> dict[str, float]:
    """``ece``, ``brier`` and ``nll`` of one set of class probabilities."""
    return {
        "ece": expected_calibration_error(labels, probabilities),
        "brier": brier_score(labels, probabilities),
        "nll": negative_log_likelihood(labels, probabilities),
    }


def predictive_entropy(probabilities: np.ndarray) -> np.ndarray:
    """Entropy (nats) of each row's class distribution; 0 log 0 counts as 0."""
    return stats.entropy(probabilities, axis=1)
