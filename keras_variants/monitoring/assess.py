"""The accuracy of new rows estimated without labels, with its interval or the reason there
is none: the one procedure that a scoring and every window of the known shifts go
through (so the intervals measured on the shifts are those a scoring prints).

1. The class mix: when the predicted classes drifted (their signal fired), the held-out
   rows are re-mixed to the class shares that black-box shift estimation finds for the
   new rows (:mod:`.label_shift`) and the estimators fitted on them again; a changed mix
   of classes is then not taken for a changed accuracy. Otherwise the fitted ones.
2. The estimate: the version's estimator (:mod:`.estimate`) on every new row's
   confidence, the one the interval is built around; the number printed is the version's
   point estimator's (the smallest error on the known shifts) when it lies inside that
   interval (:func:`.interval.placed`).
3. The distances: per drift statistic, the new rows against the reference (re-mixed
   alike), on the calibrated size's number of rows (a seeded subset): the
   Kolmogorov-Smirnov statistic of each input feature, of the confidence and of the
   entropy, and the MMD of the last hidden layer (:mod:`.signals`).
4. The interval (:func:`.interval.interval`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from keras_variants.monitoring import estimate
from keras_variants.monitoring.interval import Interval, interval, placed, size_for
from keras_variants.monitoring.label_shift import class_weights
from keras_variants.monitoring.observe import Observed
from keras_variants.monitoring.profile import Profile
from keras_variants.monitoring.signals import gaussian_kernel, ks_distance, mmd_distance

REMIXED = "classes re-mixed"  # said of an estimate fitted on the re-mixed held-out rows


@dataclass(frozen=True)
class Assessment:
    """An accuracy estimate, its interval (or why none), and what it rests on."""

    interval: Interval
    estimator: str  # whose estimate the interval is built around
    class_weights: np.ndarray | None  # per class, new share over held-out share; None: not re-mixed
    distances: dict[str, float]  # at the calibrated size used (empty below the smallest)
    point: str | None = None  # whose estimate the interval holds, when another's

    @property
    def method(self) -> str:
        named = estimate.method_name(self.estimator, self.point)
        return named + (f", {REMIXED}" if self.class_weights is not None else "")


def remix(profile: Profile, classes: np.ndarray, class_drifted: bool) -> np.ndarray | None:
    """Per true class, the weight that re-mixes the held-out rows to the class mix of new
    rows predicted ``classes``; None when the classes did not drift or the version has no
    held-out answers."""
    if not class_drifted or not len(profile.held_out.labels):
        return None
    k = len(profile.class_counts)
    confusion = profile.held_out.confusion(k)
    return class_weights(confusion, np.bincount(np.asarray(classes), minlength=k)[:k])


def estimates(
    profile: Profile, confidence: np.ndarray, weights: np.ndarray | None
) -> dict[str, float]:
    """Every estimator's estimate for rows of ``confidence``, fitted on the held-out rows
    re-mixed by ``weights`` (per class) or as fitted."""
    fitted = profile.estimators
    if weights is not None:
        held = profile.held_out
        fitted = estimate.fit(held.confidence, held.correct, weights[held.labels])
    return {name: fitted.estimate(name, confidence) for name in estimate.ESTIMATORS}


def distances(
    profile: Profile,
    window: Observed,
    weights: np.ndarray | None,
    kernel: np.ndarray | None = None,
    window_rows: np.ndarray | None = None,
) -> dict[str, float]:
    """Per drift statistic, how far ``window`` is from the reference re-mixed by
    ``weights`` (per class; None: as it is). ``kernel``: the Gaussian kernel of the
    reference's distance rows followed by rows of which ``window`` is ``window_rows``
    (a caller measuring many windows computes it once); computed here when None."""
    reference = profile.reference
    row_weights = None if weights is None else weights[profile.reference_labels]
    out = {
        name: ks_distance(values, window.features[name], row_weights)
        for name, values in reference.features.items()
    }
    out["confidence"] = ks_distance(reference.confidence, window.confidence, row_weights)
    out["entropy"] = ks_distance(reference.entropy, window.entropy, row_weights)
    theirs = profile.distance_rows()
    if kernel is None:
        kernel = gaussian_kernel(
            np.concatenate([reference.hidden[theirs], window.hidden]), profile.bandwidth
        )
        window_rows = np.arange(len(window))
    assert window_rows is not None
    out["embedding"] = mmd_distance(
        kernel, len(theirs), window_rows, None if row_weights is None else row_weights[theirs]
    )
    return out


def assess(
    profile: Profile,
    confidence: np.ndarray,
    classes: np.ndarray,
    sample: Observed,
    class_drifted: bool,
    rng: np.random.Generator,
) -> Assessment:
    """The estimate of the accuracy of rows whose served answers are ``confidence`` and
    ``classes`` (every row), with ``sample`` (at most 1,000 of them, observed) for the
    distances and ``class_drifted`` from the predicted classes' signal."""
    weights = remix(profile, classes, class_drifted)
    values = estimates(profile, confidence, weights)
    value = values[profile.estimator]
    size = size_for(len(confidence), profile.envelopes)
    measured: dict[int, dict[str, float]] = {}
    if size is not None:
        subset = np.sort(rng.permutation(len(sample))[: min(size, len(sample))])
        measured[size] = distances(profile, sample.take(subset), weights)
    result = interval(profile.envelopes, value, len(confidence), measured)
    point = profile.point_estimator
    if point is not None and point != profile.estimator:
        moved = placed(result, values[point])
        if moved is not None:
            return Assessment(moved, profile.estimator, weights, measured.get(size, {}), point)
    return Assessment(result, profile.estimator, weights, measured.get(size, {}))
