"""Uncertainty: how a model's predictions hold up beside its probabilities.

Plain functions over NumPy arrays: no tracking, no files. As in the lecture's Gal &
Ghahramani slide: how well Monte Carlo dropout's predictive entropy flags mistakes, and
inputs far from the training data (digits rotated by 0-180 degrees, reviews whose words
are shuffled into random order, reviews of random vocabulary words). Calibration lives in
:mod:`keras_variants.model.calibration`, the model passes in
:mod:`keras_variants.model.inference`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from scipy import ndimage
from sklearn.metrics import roc_auc_score

from keras_variants.data.datasets import Examples
from keras_variants.data.preprocessing import INDEX_FROM, START_CHAR
from keras_variants.data.ragged import Ragged
from keras_variants.model.calibration import (
    ECE_BINS,
    calibration_metrics,
    expected_calibration_error,
    predictive_entropy,
    reliability_diagram,
)

ROTATION_ANGLES = tuple(range(0, 181, 15))  # degrees, counter-clockwise
FAR_ROWS = 1_000  # test rows scored per far-from-data set (seeded choice)
UNCERTAIN_SHARE = 0.10  # "the 10% most / least uncertain" test rows
IMDB_SETS = ("test", "shuffled_words", "random_words")

# Stored examples -> (N, C) class probabilities (one deterministic or Monte Carlo scorer).
Scorer = Callable[[Examples], np.ndarray]


def mc_dropout_metrics(
    labels: np.ndarray, mean_probabilities: np.ndarray, share: float = UNCERTAIN_SHARE
) -> dict[str, float]:
    """How good the MC predictive distribution is and how well its entropy flags mistakes:
    accuracy, ECE, mean entropy, AUROC of entropy for "the prediction is wrong" (NaN when
    every prediction is right, or every one wrong) and accuracy on the ``share`` most and
    least uncertain rows."""
    labels = np.asarray(labels)
    correct = mean_probabilities.argmax(axis=1) == labels
    entropy = predictive_entropy(mean_probabilities)
    wrong = ~correct
    auroc = roc_auc_score(wrong, entropy) if 0 < wrong.sum() < len(wrong) else math.nan
    order = np.argsort(entropy, kind="stable")
    k = max(1, math.ceil(share * len(order)))
    return {
        "mc_accuracy": float(correct.mean()),
        "mc_ece": expected_calibration_error(labels, mean_probabilities),
        "mc_entropy_mean": float(entropy.mean()),
        "mc_error_auroc": float(auroc),
        "mc_accuracy_most_uncertain_10pct": float(correct[order[-k:]].mean()),
        "mc_accuracy_least_uncertain_10pct": float(correct[order[:k]].mean()),
    }


# Far from the training data ---------------------------------------------------------------


def rotated_digits(images: np.ndarray, angle: float) -> np.ndarray:
    """uint8 digits (N, 28, 28) turned ``angle`` degrees counter-clockwise about their
    centre: same size, black where the turn brings in nothing, bilinear, rounded."""
    turned = ndimage.rotate(
        np.asarray(images, dtype=np.float32),
        angle,
        axes=(2, 1),
        reshape=False,
        order=1,
        mode="constant",
        cval=0.0,
    )
    return np.clip(np.rint(turned), 0, 255).astype(np.uint8)


CLOTHING = ("shirt", "trousers", "dress", "bag", "shoe")


def clothing_like(count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` synthetic 28x28 uint8 images in Fashion-MNIST's manner (no such data is
    at hand here): a light garment, bag or shoe silhouette with a woven texture on black,
    of random kind, size and place. Another kind of image in the digits' format."""
    rows, cols = np.mgrid[0:28, 0:28].astype(np.float32)
    images = np.zeros((count, 28, 28), dtype=np.float32)
    for image, kind in zip(images, rng.choice(CLOTHING, count), strict=True):
        top, height = rng.uniform(2, 6), rng.uniform(17, 23)
        centre, width = rng.uniform(12, 16), rng.uniform(10, 16)
        y = (rows - top) / height  # 0 at the top of the item, 1 at its bottom
        x = np.abs(cols - centre) / (width / 2)  # 0 in the middle, 1 at its side
        inside = (y >= 0) & (y <= 1)
        if kind == "shirt":
            mask = inside & ((x <= 0.65) | ((y <= 0.45) & (x <= 1.0)))  # body and sleeves
        elif kind == "trousers":
            mask = inside & (x <= 0.6) & ((y <= 0.3) | (x >= 0.12))  # two legs from a waist
        elif kind == "dress":
            mask = inside & (x <= 0.3 + 0.6 * y)  # widening downwards
        elif kind == "bag":
            body = (y >= 0.35) & (y <= 1) & (x <= 1.0)
            handle = (y >= 0.05) & (y < 0.35) & (x >= 0.35) & (x <= 0.55)
            mask = body | handle
        else:  # a shoe: low, wide, rising at the heel
            mask = (y >= 0.55) & (y <= 0.9) & (x <= 1.0) & ((y >= 0.7) | (cols < centre))
        texture = rng.uniform(140, 240) + rng.normal(0, 25, (28, 28)) * ((rows + cols) % 3 != 0)
        image[mask] = texture[mask]
    smooth = ndimage.gaussian_filter(images, sigma=(0, 0.5, 0.5))
    return np.clip(np.rint(smooth), 0, 255).astype(np.uint8)


def shuffled_reviews(reviews: Ragged, rng: np.random.Generator) -> Ragged:
    """Each review's words in random order, a leading start marker kept first.

    A multi-hot (bag-of-words) model cannot tell these from the originals: the set of
    words is unchanged, so its outputs are too.
    """
    rows = np.repeat(np.arange(len(reviews)), reviews.lengths)
    key = rng.random(len(reviews.values))
    starts = reviews.offsets[:-1][reviews.lengths > 0]
    key[starts[reviews.values[starts] == START_CHAR]] = -1.0
    order = np.lexsort((key, rows))
    return Ragged(reviews.values[order], reviews.offsets.copy())


def random_word_reviews(reviews: Ragged, rng: np.random.Generator, num_words: int) -> Ragged:
    """Reviews as long as ``reviews`` of word ids drawn uniformly from the vocabulary
    (``INDEX_FROM`` to ``num_words - 1``), each after a start marker."""
    values = rng.integers(INDEX_FROM, num_words, size=len(reviews.values))
    values = values.astype(reviews.values.dtype)
    values[reviews.offsets[:-1][reviews.lengths > 0]] = START_CHAR
    return Ragged(values, reviews.offsets.copy())


def far_from_data(
    dataset: str,
    examples: Examples,
    score: Scorer,
    mc_score: Scorer | None,
    seed: int,
    num_words: int = 0,
    rows: int = FAR_ROWS,
) -> dict[str, Any]:
    """Accuracy, mean max-probability and mean predictive entropy (and their Monte Carlo
    counterparts with ``mc_score``) on up to ``rows`` seeded test rows moved away from
    the data: MNIST rotated by each of ``ROTATION_ANGLES``; IMDb as they are, with their
    words shuffled, and as random vocabulary words (no label, so accuracy null)."""
    rng = np.random.default_rng(seed)
    picked = examples.take(np.sort(rng.choice(len(examples), min(rows, len(examples)), False)))
    if dataset == "mnist":
        axis, points = "angle_degrees", list(ROTATION_ANGLES)
        sets = [(rotated_digits(picked.inputs, a), picked.labels) for a in ROTATION_ANGLES]
    else:
        axis, points = "set", list(IMDB_SETS)
        sets = [
            (picked.inputs, picked.labels),
            (shuffled_reviews(picked.inputs, rng), picked.labels),
            (random_word_reviews(picked.inputs, rng, num_words), None),
        ]
    # All sets in one scoring call: one input pipeline, full batches.
    together = Examples(
        _concatenate([inputs for inputs, _ in sets]),
        np.zeros(len(picked) * len(sets), dtype=picked.labels.dtype),
    )
    out: dict[str, Any] = {"axis": axis, "points": points, "rows": len(picked)}
    scorers = {"": score} | ({"mc_": mc_score} if mc_score else {})
    for prefix, scorer in scorers.items():
        columns: dict[str, list] = {"accuracy": [], "mean_max_probability": [], "entropy_mean": []}
        every = scorer(together)
        for (_, labels), p in zip(sets, np.split(every, len(sets)), strict=True):
            correct = None if labels is None else p.argmax(axis=1) == labels
            columns["accuracy"].append(None if correct is None else float(correct.mean()))
            columns["mean_max_probability"].append(float(p.max(axis=1).mean()))
            columns["entropy_mean"].append(float(predictive_entropy(p).mean()))
        out |= {prefix + key: values for key, values in columns.items()}
    return out


def _concatenate(parts: list[np.ndarray | Ragged]) -> np.ndarray | Ragged:
    if not isinstance(parts[0], Ragged):
        return np.concatenate(parts)
    starts = np.cumsum([0] + [len(part.values) for part in parts])
    offsets = [part.offsets[:-1] + start for part, start in zip(parts, starts, strict=False)]
    return Ragged(
        np.concatenate([part.values for part in parts]),
        np.concatenate([*offsets, starts[-1:]]),
    )


def uncertainty_summary(
    dataset: str,
    examples: Examples,
    probabilities: np.ndarray,
    mc_probabilities: np.ndarray | None,
    score: Scorer,
    mc_score: Scorer | None,
    mc_samples: int,
    seed: int,
    num_words: int = 0,
) -> tuple[dict[str, float], dict[str, Any]]:
    """Test metrics (unprefixed: ``ece``, ``brier``, ``nll``, plus ``mc_*`` with
    ``mc_probabilities``) and the JSON-ready summary logged as ``uncertainty.json``.

    ``probabilities`` and ``mc_probabilities`` are the deterministic and Monte Carlo class
    probabilities of ``examples``; ``score`` and ``mc_score`` score the far-from-data sets.
    """
    labels = np.asarray(examples.labels).astype(np.int64)
    metrics = calibration_metrics(labels, probabilities)
    reliability = {"deterministic": reliability_diagram(labels, probabilities)}
    if mc_probabilities is not None:
        metrics |= mc_dropout_metrics(labels, mc_probabilities)
        reliability["mc_dropout"] = reliability_diagram(labels, mc_probabilities)
    summary = {
        "dataset": dataset,
        "bins": ECE_BINS,
        "mc_samples": mc_samples if mc_probabilities is not None else None,
        "reliability": reliability,
        "far_from_data": far_from_data(dataset, examples, score, mc_score, seed, num_words),
    }
    return metrics, summary
