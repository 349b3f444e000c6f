"""Accuracy without labels, from the served confidences, fitted on labelled held-out data.

- ``atc``: Average Thresholded Confidence (Garg et al., ICLR 2022): the confidence
  threshold above which the held-out share of rows equals the held-out accuracy; the
  estimate on new rows is their share above it (ties at the threshold split by the share
  fitted);
- ``calibrated``: calibrated mean confidence: each new row counts as the held-out accuracy
  of rows of similar confidence (15 equal-mass bins of the held-out confidences);
- ``confidence``: the plain mean confidence (a baseline; over-confident models overstate).

Which is used is measured on the known shifts (:mod:`keras_variants.monitoring.ladders`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ESTIMATORS = ("atc", "calibrated", "confidence")
BINS = 15


def method_name(estimator: str, point: str | None) -> str:
    """How an estimate is named: the estimator its interval is built around, and the one
    whose estimate is printed inside it when that is another (:mod:`.assess`)."""
    return estimator if point in (None, estimator) else f"{point} in {estimator}'s interval"


@dataclass(frozen=True)
class Estimators:
    """The fitted parameters of every estimator."""

    atc_threshold: float
    atc_tie_share: float  # of rows exactly at the threshold, counted as correct
    bin_edges: np.ndarray  # inner edges of the confidence bins
    bin_accuracy: np.ndarray  # held-out accuracy per bin

    def estimate(self, method: str, confidence: np.ndarray) -> float:
        confidence = np.asarray(confidence, dtype=np.float64)
        if not len(confidence):
            return float("nan")
        if method == "atc":
            above = np.mean(confidence > self.atc_threshold)
            at = np.mean(confidence == self.atc_threshold)
            return float(above + self.atc_tie_share * at)
        if method == "calibrated":
            return float(self.bin_accuracy[np.digitize(confidence, self.bin_edges)].mean())
        if method == "confidence":
            return float(confidence.mean())
        raise ValueError(f"unknown estimator {method!r}; choose from {', '.join(ESTIMATORS)}")


def fit(
    confidence: np.ndarray, correct: np.ndarray, weights: np.ndarray | None = None
) -> Estimators:
    """Fit every estimator on held-out ``confidence`` and whether each row was ``correct``;
    ``weights`` (one per row, default equal): the held-out rows re-mixed, so that the
    estimators are those of that mix (:mod:`keras_variants.monitoring.label_shift`)."""
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=bool)
    w = np.ones(len(confidence)) if weights is None else np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    accuracy = float(w @ correct)
    if weights is None:
        threshold = float(np.quantile(confidence, 1.0 - accuracy, method="lower"))
    else:
        threshold = float(np.quantile(confidence, 1.0 - accuracy, weights=w, method="inverted_cdf"))
    above, at = w[confidence > threshold].sum(), w[confidence == threshold].sum()
    tie_share = float(np.clip((accuracy - above) / at, 0.0, 1.0)) if at > 0 else 0.0
    edges = np.unique(np.quantile(confidence, np.linspace(0, 1, BINS + 1)[1:-1]))
    which = np.digitize(confidence, edges)
    mass = np.bincount(which, weights=w, minlength=len(edges) + 1)
    right = np.bincount(which, weights=w * correct, minlength=len(edges) + 1)
    bin_accuracy = np.where(mass > 0, right / np.where(mass > 0, mass, 1.0), accuracy)
    return Estimators(threshold, tie_share, edges, bin_accuracy)
