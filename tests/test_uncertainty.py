"""Calibration metrics against hand-computed answers, Monte Carlo dropout (stochastic, the
same numbers as repeated ``model(x, training=True)``, flat memory), the far-from-data sets,
and the evaluation on a slice of the real data."""

from __future__ import annotations

import gc
import json
import math
from pathlib import Path

import keras
import numpy as np
import psutil
import pytest

from keras_variants.config.pipeline import PROFILES, build_config
from keras_variants.config.variants import DEFAULT_VARIANTS, VARIANTS
from keras_variants.data.datasets import load_dataset, make_splits
from keras_variants.data.preprocessing import INDEX_FROM, START_CHAR
from keras_variants.data.ragged import Ragged
from keras_variants.model.builders import build_model
from keras_variants.model.calibration import (
    brier_score,
    class_probabilities,
    expected_calibration_error,
    negative_log_likelihood,
    predictive_entropy,
    reliability_diagram,
)
from keras_variants.model.inference import (
    _SAMPLERS,
    has_dropout,
    inference_outputs,
    mc_dropout_mean,
    mc_dropout_predict,
)
from keras_variants.model.training import evaluate
from keras_variants.model.uncertainty import (
    ROTATION_ANGLES,
    mc_dropout_metrics,
    random_word_reviews,
    rotated_digits,
    shuffled_reviews,
)

# Four rows, confidences 0.9 (right), 0.9 (wrong), 0.65 (right), 0.75 (right): in 15 bins of
# width 1/15 they fall in bins 13, 13, 9 and 11.
LABELS = np.array([0, 1, 0, 1])
PROBABILITIES = np.array([[0.9, 0.1], [0.9, 0.1], [0.65, 0.35], [0.25, 0.75]])


def test_ece_of_hand_made_predictions() -> None:
    # bin 13: |0.5 - 0.9| * 2/4; bin 9: |1 - 0.65| * 1/4; bin 11: |1 - 0.75| * 1/4
    expected = 0.4 * 2 / 4 + 0.35 / 4 + 0.25 / 4
    assert expected_calibration_error(LABELS, PROBABILITIES) == pytest.approx(expected)
    three_classes = np.array([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8], [0.2, 0.7, 0.1]])
    # 0.5 right (bin 7), 0.8 wrong (bin 11), 0.7 right (bin 10): (0.5 + 0.8 + 0.3) / 3
    ece = expected_calibration_error(np.array([0, 1, 1]), three_classes)
    assert ece == pytest.approx((0.5 + 0.8 + 0.3) / 3)
    certain = np.eye(3)[[0, 1, 2, 2]]
    assert expected_calibration_error(np.array([0, 1, 2, 2]), certain) == 0.0
    assert expected_calibration_error(np.array([1, 1, 2, 2]), certain) == pytest.approx(0.25)


def test_reliability_diagram_holds_the_bins_behind_the_ece() -> None:
    diagram = reliability_diagram(LABELS, PROBABILITIES)
    assert len(diagram["bin_edges"]) == 16 and diagram["bin_edges"][-1] == 1.0
    assert diagram["count"] == [0] * 9 + [1, 0, 1, 0, 2, 0]
    assert diagram["accuracy"][13] == 0.5 and diagram["confidence"][13] == pytest.approx(0.9)
    assert diagram["accuracy"][9] == 1.0 and diagram["confidence"][9] == pytest.approx(0.65)
    assert diagram["accuracy"][0] is None and diagram["confidence"][14] is None
    json.dumps(diagram, allow_nan=False)
    # a confidence of exactly 1 lands in the last bin
    assert reliability_diagram(np.array([0]), np.array([[1.0, 0.0]]))["count"][-1] == 1


def test_brier_score_of_hand_made_predictions() -> None:
    positive = np.array([[0.1], [0.9], [0.8], [0.3]])  # a sigmoid column
    expected = (0.1**2 + 0.1**2 + 0.2**2 + 0.3**2) / 4  # mean squared error, 2 classes
    assert brier_score(np.array([0, 1, 1, 0]), class_probabilities(positive)) == pytest.approx(
        expected
    )
    rows = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.2, 0.2, 0.6]])
    # summed over classes: (0.06 + 0.14 + 0.24) / 3
    assert brier_score(np.array([0, 1, 2]), rows) == pytest.approx(0.44 / 3)


def test_nll_of_hand_made_predictions() -> None:
    expected = -(math.log(0.9) + math.log(0.1) + math.log(0.65) + math.log(0.75)) / 4
    assert negative_log_likelihood(LABELS, PROBABILITIES) == pytest.approx(expected)
    # a label the model gives 0 is clipped at float64 precision, not infinite
    assert math.isfinite(negative_log_likelihood(np.array([1]), np.array([[1.0, 0.0]])))


def test_class_probabilities_and_entropy() -> None:
    np.testing.assert_allclose(class_probabilities(np.array([[0.25]])), [[0.75, 0.25]])
    entropy = predictive_entropy(np.array([[0.1] * 10, [1.0] + [0.0] * 9]))
    np.testing.assert_allclose(entropy, [math.log(10), 0.0], atol=1e-12)


def test_mc_metrics_of_hand_made_predictions() -> None:
    # ten rows; the two wrong ones are the most uncertain, so entropy ranks mistakes perfectly
    confident = [[0.95, 0.05]] * 8
    mean = np.array([*confident, [0.55, 0.45], [0.5, 0.5]])
    labels = np.array([0] * 8 + [1, 1])
    metrics = mc_dropout_metrics(labels, mean)
    assert metrics["mc_accuracy"] == pytest.approx(0.8)
    assert metrics["mc_error_auroc"] == pytest.approx(1.0)
    assert metrics["mc_accuracy_most_uncertain_10pct"] == 0.0
    assert metrics["mc_accuracy_least_uncertain_10pct"] == 1.0
    assert metrics["mc_entropy_mean"] == pytest.approx(predictive_entropy(mean).mean())
    assert math.isnan(mc_dropout_metrics(np.zeros(8, int), np.array(confident))["mc_error_auroc"])


def _dropout_model(seed: int, inputs: int = 8) -> keras.Sequential:
    init = keras.initializers.GlorotUniform(seed=seed)
    return keras.Sequential(
        [
            keras.Input((inputs,)),
            keras.layers.Dense(32, activation="relu", kernel_initializer=init),
            keras.layers.Dropout(0.5, seed=seed),
            keras.layers.Dense(3, activation="softmax", kernel_initializer=init),
        ]
    )


def test_mc_passes_are_dropout_passes() -> None:
    """Passes differ from each other and from inference, and equal what repeated eager
    ``model(x, training=True)`` calls give (same seeds), though the layers before the
    first dropout run once per batch."""
    x = np.random.default_rng(0).random((16, 8), dtype=np.float32)
    model = _dropout_model(seed=3)
    first = mc_dropout_mean(model, [x], samples=1)
    second = mc_dropout_mean(model, [x], samples=1)
    assert not np.allclose(first, second)
    inference = model(x, training=False).numpy()
    assert not np.allclose(first, inference)
    np.testing.assert_allclose(inference_outputs(model, [x[:5], x[5:]]), inference, rtol=1e-5)
    twin = _dropout_model(seed=3)
    ours = mc_dropout_mean(twin, [x], samples=5)
    eager = _dropout_model(seed=3)
    repeated = np.mean([eager(x, training=True).numpy() for _ in range(5)], axis=0)
    np.testing.assert_allclose(ours, repeated, rtol=1e-5, atol=1e-6)


def test_mc_dropout_predict_for_serving() -> None:
    model = build_model(VARIANTS["imdb_dropout"], seed=0)
    x = (np.random.default_rng(1).random((5, 10_000)) < 0.02).astype(np.float32)
    mean, entropy = mc_dropout_predict(model, x, samples=30, batch_size=2)
    assert mean.shape == (5, 1) and entropy.shape == (5,)
    assert np.all((mean > 0) & (mean < 1)) and np.all(entropy > 0)
    p = mean[:, 0]
    np.testing.assert_allclose(entropy, -(p * np.log(p) + (1 - p) * np.log(1 - p)), rtol=1e-6)
    empty_mean, empty_entropy = mc_dropout_predict(model, np.zeros((0, 10_000)), samples=30)
    assert empty_mean.shape == (0, 1) and empty_entropy.shape == (0,)
    assert has_dropout(model)
    plain = build_model(VARIANTS["imdb_dense"], seed=0)
    assert not has_dropout(plain)
    np.testing.assert_allclose(mc_dropout_predict(plain, x)[0], plain(x).numpy(), rtol=1e-6)


def test_mc_memory_stays_flat_over_many_batches() -> None:
    """200 calls, as a server answers requests (and evaluation runs batches): one trace
    each, and RSS does not grow."""
    model = _dropout_model(seed=0, inputs=784)
    x = np.random.default_rng(0).random((256, 784), dtype=np.float32)
    process = psutil.Process()
    for _ in range(20):  # warm-up: tracing, allocator pools
        mc_dropout_predict(model, x, samples=30)
        inference_outputs(model, [x])
    gc.collect()
    before = process.memory_info().rss
    for _ in range(200):
        mc_dropout_predict(model, x, samples=30)
        inference_outputs(model, [x])
    gc.collect()
    growth = process.memory_info().rss - before
    assert growth < 50 * 2**20, f"RSS grew {growth / 2**20:.1f} MB over 200 batches"
    assert _SAMPLERS[model][30].experimental_get_tracing_count() == 1
    assert _SAMPLERS[model][0].experimental_get_tracing_count() == 1


def test_rotated_digits() -> None:
    digits = np.random.default_rng(0).integers(0, 256, (4, 28, 28)).astype(np.uint8)
    np.testing.assert_array_equal(rotated_digits(digits, 0), digits)
    np.testing.assert_array_equal(rotated_digits(digits, 90), np.rot90(digits, 1, axes=(1, 2)))
    np.testing.assert_array_equal(rotated_digits(digits, 180), digits[:, ::-1, ::-1])
    turned = rotated_digits(digits, 45)
    assert turned.dtype == np.uint8 and turned.shape == digits.shape
    assert turned[:, 0, 0].max() == 0  # corners come from outside the image: black


def test_far_from_data_reviews() -> None:
    lengths = np.array([5, 1, 30])
    rng = np.random.default_rng(0)
    values = np.concatenate(
        [[START_CHAR, *rng.integers(INDEX_FROM, 100, n - 1)] for n in lengths]
    ).astype(np.int32)
    reviews = Ragged(values, np.concatenate([[0], np.cumsum(lengths)]))
    shuffled = shuffled_reviews(reviews, np.random.default_rng(1))
    randomized = random_word_reviews(reviews, np.random.default_rng(1), num_words=10_000)
    for made in (shuffled, randomized):
        np.testing.assert_array_equal(made.offsets, reviews.offsets)
        assert np.all(made.values[reviews.offsets[:-1]] == START_CHAR)
    for row in range(len(reviews)):
        original, mixed = (
            r.values[r.offsets[row] : r.offsets[row + 1]] for r in (reviews, shuffled)
        )
        np.testing.assert_array_equal(np.sort(original), np.sort(mixed))
    assert not np.array_equal(shuffled.values, reviews.values)
    words = np.delete(randomized.values, reviews.offsets[:-1])
    assert words.min() >= INDEX_FROM and words.max() < 10_000


def test_dropout_cnn_is_opt_in() -> None:
    assert "mnist_cnn_dropout" in VARIANTS and "mnist_cnn_dropout" not in DEFAULT_VARIANTS
    assert len(DEFAULT_VARIANTS) == 6 and set(DEFAULT_VARIANTS) < set(VARIANTS)
    assert build_config().variants == DEFAULT_VARIANTS
    assert build_config(variants=("mnist_cnn_dropout",)).variants == ("mnist_cnn_dropout",)
    kinds = [type(layer).__name__ for layer in build_model(VARIANTS["mnist_cnn_dropout"], 0).layers]
    assert kinds[-5:] == ["Flatten", "Dropout", "Dense", "Dropout", "Dense"]
    assert "Dropout" not in [
        type(layer).__name__ for layer in build_model(VARIANTS["mnist_cnn"], 0).layers
    ]


@pytest.mark.parametrize("name", ["imdb_dropout", "mnist_cnn_dropout", "mnist_dense"])
def test_evaluate_logs_calibration_and_far_from_data(data_slices: Path, name: str) -> None:
    variant = VARIANTS[name].model_copy(update={"mc_samples": 5})
    data = load_dataset(variant.dataset, data_slices, 10_000)
    test = make_splits(data, PROFILES["smoke"], seed=0).test.take(np.arange(200))
    model = build_model(variant, seed=0)
    metrics, confusion, summary = evaluate(model, variant, test, seed=0)
    assert confusion.sum() == 200
    assert {"test/ece", "test/brier", "test/nll"} <= set(metrics)
    mc_keys = {k for k in metrics if k.startswith("test/mc_")}
    assert len(mc_keys) == (6 if variant.dropout else 0)
    json.dumps(summary, allow_nan=False)
    assert summary["variant"] == name and summary["bins"] == 15
    assert sum(summary["reliability"]["deterministic"]["count"]) == 200
    far = summary["far_from_data"]
    assert far["rows"] == 200
    assert far["accuracy"][0] == pytest.approx(metrics["test/accuracy"])  # every row, as is
    if variant.dataset == "mnist":
        assert far["points"] == list(ROTATION_ANGLES) and far["axis"] == "angle_degrees"
    else:
        assert far["points"] == ["test", "shuffled_words", "random_words"]
        assert far["accuracy"][2] is None
        # a bag-of-words model sees the same words in any order
        assert far["mean_max_probability"][1] == pytest.approx(far["mean_max_probability"][0])
    assert ("mc_entropy_mean" in far) == bool(variant.dropout)
    assert summary["mc_samples"] == (5 if variant.dropout else None)
    plain, _, nothing = evaluate(model, variant, test, uncertainty=False)
    assert nothing == {} and set(plain) == {
        k for k in metrics if k.split("/")[1] in ("loss", "accuracy", "auc")
    }
