"""Calibration and uncertainty: how far a model's probabilities can be trusted.

Plain functions over NumPy arrays (and, for Monte Carlo dropout, a Keras model): no
tracking, no files. Three concerns, as in the lecture's Gal & Ghahramani slide:

* calibration of class probabilities: top-label expected calibration error over 15
  equal-width bins and its reliability diagram, Brier score, negative log-likelihood;
* Monte Carlo dropout (Gal & Ghahramani, 2016): T passes with the dropout layers on,
  batched inside one compiled function, averaged into a predictive distribution whose
  entropy is the model's uncertainty;
* inputs far from the training data: digits rotated by 0-180 degrees, reviews whose words
  are shuffled into random order, reviews of random vocabulary words.

Class probabilities are ``(N, C)`` float64 rows throughout; a sigmoid output ``p`` is the
two classes ``[1 - p, p]`` (:func:`class_probabilities`). Entropies are in nats.
TensorFlow is imported only by the Monte Carlo functions.
"""

from __future__ import annotations

import math
import threading
import weakref
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
from scipy import ndimage, stats
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score

from keras_variants.datasets import Examples
from keras_variants.preprocessing import INDEX_FROM, START_CHAR
from keras_variants.ragged import Ragged

ECE_BINS = 15
ROTATION_ANGLES = tuple(range(0, 181, 15))  # degrees, counter-clockwise
FAR_ROWS = 1_000  # test rows scored per far-from-data set (seeded choice)
UNCERTAIN_SHARE = 0.10  # "the 10% most / least uncertain" test rows
IMDB_SETS = ("test", "shuffled_words", "random_words")

# Stored examples -> (N, C) class probabilities (one deterministic or Monte Carlo scorer).
Scorer = Callable[[Examples], np.ndarray]


# Calibration ------------------------------------------------------------------------------


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


# Monte Carlo dropout ----------------------------------------------------------------------

# Compiled functions per model: T -> sampler, 0 -> inference. Weak keys, and a compiled
# function holds only a weak reference to its model, so both are freed together.
_SAMPLERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_SAMPLERS_LOCK = threading.Lock()


def _random(layer: Any) -> bool:
    """Dropout and any other layer that draws random numbers (it has a seed generator)."""
    return hasattr(layer, "seed_generator")


def has_dropout(model: Any) -> bool:
    """Whether Monte Carlo passes of ``model`` can differ: it has a random layer."""
    return any(_random(layer) for layer in model.layers)


def _split_at_first_random_layer(model: Any) -> tuple[list, list]:
    """A Sequential model's layers before its first random layer and from it on; any other
    model is one random step."""
    import keras

    if not isinstance(model, keras.Sequential):
        return [], [model]
    layers = list(model.layers)
    first = next((i for i, layer in enumerate(layers) if _random(layer)), len(layers))
    return layers[:first], layers[first:]


def _compile(model: Any, samples: int) -> Callable:
    """One compiled function of a float input batch, with a fixed input signature (no
    retracing per batch size): ``model(x, training=False)`` for ``samples == 0``, else the
    mean of ``samples`` passes of ``model(x, training=True)``.

    Layers before the first dropout layer give the same output on every pass, so they run
    once per batch and only the rest runs ``samples`` times: the same numbers as calling
    the whole model ``samples`` times, at a fraction of the cost (for IMDb, the
    10,000-wide first layer runs once).
    """
    import tensorflow as tf

    model_ref = weakref.ref(model)
    signature = tf.TensorSpec((None, *model.input_shape[1:]), tf.float32)

    @tf.function(input_signature=[signature])
    def inference(x: tf.Tensor) -> tf.Tensor:
        return model_ref()(x, training=False)

    @tf.function(input_signature=[signature])
    def mean_of_passes(x: tf.Tensor) -> tf.Tensor:
        fixed, random = _split_at_first_random_layer(model_ref())
        for layer in fixed:
            x = layer(x, training=True)
        total = None
        for _ in range(samples):  # unrolled at tracing: T independent dropout masks
            out = x
            for layer in random:
                out = layer(out, training=True)
            total = out if total is None else total + out
        return total / samples

    return mean_of_passes if samples else inference


def _run_compiled(model: Any, batches: Iterable[Any], samples: int) -> np.ndarray:
    with _SAMPLERS_LOCK:
        per_model = _SAMPLERS.setdefault(model, {})
        if samples not in per_model:
            per_model[samples] = _compile(model, samples)
        function = per_model[samples]
    outputs = [function(x).numpy() for x in batches]
    if not outputs:
        return np.zeros((0, *model.output_shape[1:]), dtype=np.float32)
    return np.concatenate(outputs)


def inference_outputs(model: Any, batches: Iterable[Any]) -> np.ndarray:
    """``model(x, training=False)`` for each float input batch, compiled once per model
    (about twice as fast as eager calls for the CNN, and memory stays flat)."""
    return _run_compiled(model, batches, 0)


def mc_dropout_mean(model: Any, batches: Iterable[Any], samples: int) -> np.ndarray:
    """Mean of ``samples`` dropout-on passes of ``model`` for each row of each float input
    batch, in the model's output shape (a sigmoid column stays one column)."""
    if samples < 1:
        raise ValueError(f"Monte Carlo dropout needs at least 1 pass, not {samples}")
    return _run_compiled(model, batches, samples)


def mc_dropout_predict(
    model: Any, inputs: np.ndarray, samples: int = 30, batch_size: int = 1024
) -> tuple[np.ndarray, np.ndarray]:
    """Monte Carlo dropout for a batch of float model inputs (what the served model needs):
    the mean of ``samples`` passes with dropout on, in the model's output shape ((N, 1)
    probability positive for IMDb, (N, 10) for MNIST), and each row's predictive entropy
    in nats, shape (N,). A model without dropout (:func:`has_dropout`) gives its plain
    outputs and their entropy."""
    inputs = np.asarray(inputs, dtype=np.float32)
    batches = (inputs[i : i + batch_size] for i in range(0, len(inputs), batch_size))
    mean = mc_dropout_mean(model, batches, samples)
    return mean, predictive_entropy(class_probabilities(mean)) if len(mean) else np.zeros(0)


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
