"""Training and evaluation of one variant: pure Keras and NumPy, no tracking, no files.

Tracking and progress reporting plug in as Keras callbacks passed by the caller.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import keras
import numpy as np
import tensorflow as tf

from keras_variants.config.variants import DATASETS, HISTORY_KEYS, SCORING_BATCH_ROWS, VariantConfig
from keras_variants.data.datasets import Examples, Splits
from keras_variants.data.preprocessing import (
    encode_batch,
    encode_label_batch,
    encode_word_set_batch,
    stored_tensor,
    word_sets,
)
from keras_variants.interrupts import stop_requested
from keras_variants.model.builders import build_model
from keras_variants.model.calibration import class_probabilities
from keras_variants.model.inference import inference_outputs, mc_dropout_mean
from keras_variants.model.uncertainty import uncertainty_summary
from keras_variants.model.word_sets import trains_on_word_sets, word_set_twin


@dataclass
class TrainingResult:
    model: keras.Model
    history: dict[str, list[float]]  # "train/loss" -> one value per epoch
    test_metrics: dict[str, float]  # "test/loss", "test/accuracy" (+ "test/auc" if binary)
    confusion_matrix: np.ndarray  # rows: true class, columns: predicted class
    training_seconds: float
    validation_loss_min_epoch: int  # 1-based
    # Reliability diagrams and far-from-data scores: uncertainty.uncertainty_summary's layout,
    # logged as uncertainty.json. Empty when evaluated without them.
    uncertainty: dict = field(default_factory=dict)

    @property
    def parameter_count(self) -> int:
        return int(self.model.count_params())


def encoded_batches(
    examples: Examples,
    variant: VariantConfig,
    batch_size: int,
    shuffle_seed: int | None = None,
) -> tf.data.Dataset:
    """Batches of float inputs and labels, encoded from the compact examples on the fly.

    The encoding is :mod:`keras_variants.data.preprocessing`'s, the one the gate and the served
    model use, as TensorFlow ops: no Python per batch, so variants training side by side do
    not wait on each other for the GIL, and no full float matrix is ever built. Row order is
    shuffled by tf.data with a fixed seed, reshuffled every epoch, so the batches are the
    same on every run with that seed.
    """
    inputs = stored_tensor(examples.inputs)
    return _batches(
        examples, variant, batch_size, shuffle_seed, inputs, lambda x: encode_batch(x, variant)
    )


def word_set_batches(
    examples: Examples,
    variant: VariantConfig,
    batch_size: int,
    shuffle_seed: int | None = None,
) -> tf.data.Dataset:
    """:func:`encoded_batches`' rows and labels in the same order, each review as its set of
    word ids (a sparse multi-hot row) instead of its dense multi-hot row: what the word-set
    twin trains on."""
    width = variant.input_shape[0]
    inputs = stored_tensor(word_sets(examples.inputs, width))
    return _batches(
        examples,
        variant,
        batch_size,
        shuffle_seed,
        inputs,
        lambda x: encode_word_set_batch(x, width),
    )


def _batches(
    examples: Examples,
    variant: VariantConfig,
    batch_size: int,
    shuffle_seed: int | None,
    inputs: tf.Tensor | tf.RaggedTensor,
    encode_inputs: Callable[[tf.Tensor | tf.RaggedTensor], tf.Tensor | tf.SparseTensor],
) -> tf.data.Dataset:
    head = DATASETS[variant.dataset]
    labels = tf.constant(examples.labels.astype(np.int64))

    def encode(rows: tf.Tensor) -> tuple[tf.Tensor | tf.SparseTensor, tf.Tensor]:
        return (
            encode_inputs(tf.gather(inputs, rows)),
            encode_label_batch(tf.gather(labels, rows), head),
        )

    rows = tf.data.Dataset.range(len(examples))
    if shuffle_seed is not None:
        rows = rows.shuffle(len(examples), seed=shuffle_seed, reshuffle_each_iteration=True)
    return rows.batch(batch_size).map(encode).prefetch(1)


class EpochProgress(keras.callbacks.Callback):
    """Calls ``report(epoch, epochs, logs, seconds)`` after every epoch (1-based epoch)."""

    def __init__(self, epochs: int, report: Callable[[int, int, dict, float], None]) -> None:
        super().__init__()
        self.epochs, self.report = epochs, report
        self._started = time.perf_counter()

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.report(epoch + 1, self.epochs, dict(logs or {}), time.perf_counter() - self._started)


class StopOnRequest(keras.callbacks.Callback):
    """Ends training with KeyboardInterrupt after the batch in which a stop was requested."""

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if stop_requested():
            self.model.stop_training = True
            raise KeyboardInterrupt("stop requested")

    on_test_batch_end = on_train_batch_end


def train_and_evaluate(
    variant: VariantConfig,
    splits: Splits,
    epochs: int,
    seed: int,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    steps_per_execution: int = 1,
    precision: str = "float32",
) -> TrainingResult:
    """Build, train with validation curves, then score once on the test split.

    A dense model of multi-hot rows (IMDb's) trains as its word-set twin
    (:mod:`keras_variants.model.word_sets`): the same variables, layers and optimizer, fed
    each review's set of word ids, so no multi-hot row is built in training. The model
    returned, evaluated and served is the lecture's ``Dense`` model, on multi-hot rows.
    """
    model = build_model(variant, seed, steps_per_execution, precision)
    if trains_on_word_sets(variant):
        trained, batches = word_set_twin(model, variant), word_set_batches
    else:
        trained, batches = model, encoded_batches
    train = batches(splits.train, variant, variant.batch_size, shuffle_seed=seed)
    validation = batches(splits.validation, variant, variant.batch_size)
    started = time.perf_counter()
    fit = trained.fit(
        train,
        validation_data=validation,
        epochs=epochs,
        shuffle=False,  # tf.data already reshuffles every epoch with the seed
        verbose=0,
        callbacks=list(callbacks),
    )
    training_seconds = time.perf_counter() - started
    del trained, train, validation  # their tensors make room for the test split's
    history = {HISTORY_KEYS[k]: [float(v) for v in vs] for k, vs in fit.history.items()}
    test_metrics, confusion, uncertainty = evaluate(model, variant, splits.test, seed=seed)
    return TrainingResult(
        model=model,
        history=history,
        test_metrics=test_metrics,
        confusion_matrix=confusion,
        training_seconds=training_seconds,
        validation_loss_min_epoch=int(np.argmin(history["val/loss"])) + 1,
        uncertainty=uncertainty,
    )


def _outputs(
    model: keras.Model, batches: tf.data.Dataset, mc_samples: int = 0
) -> tuple[np.ndarray, np.ndarray | None]:
    """Outputs with dropout off and, with ``mc_samples``, the mean of that many passes with
    dropout on: one pass over the batches, so the inputs are encoded once."""
    outputs, mc_means = [], []
    for x, _ in batches:
        # Compiled calls, not model.predict, which holds on to far more memory on large inputs.
        outputs.append(inference_outputs(model, [x]))
        if mc_samples:
            mc_means.append(mc_dropout_mean(model, [x], mc_samples))
    return np.concatenate(outputs), np.concatenate(mc_means) if mc_samples else None


def evaluate(
    model: keras.Model,
    variant: VariantConfig,
    examples: Examples,
    *,
    seed: int = 0,
    uncertainty: bool = True,
) -> tuple[dict[str, float], np.ndarray, dict]:
    """Test loss, accuracy (and AUC for binary labels), the confusion matrix and, with
    ``uncertainty``, calibration (``test/ece``, ``test/brier``, ``test/nll``), Monte Carlo
    dropout metrics (``test/mc_*``, variants with dropout, ``variant.mc_samples`` passes)
    and the summary for ``uncertainty.json`` (far-from-data rows chosen with ``seed``)."""
    batches = encoded_batches(examples, variant, batch_size=SCORING_BATCH_ROWS)
    scores = model.evaluate(batches, verbose=0, return_dict=True)
    mc_samples = variant.mc_samples if uncertainty and variant.dropout else 0
    probabilities, mc_outputs = _outputs(model, batches, mc_samples)
    labels = examples.labels.astype(np.int64)
    metrics: dict[str, float] = {}
    if DATASETS[variant.dataset].label_encoding == "binary":
        scores_1d = probabilities.reshape(-1)
        predicted = (scores_1d > 0.5).astype(np.int64)
        metrics["test/auc"] = roc_auc(labels, scores_1d)
    else:
        predicted = probabilities.argmax(axis=1)
    classes = DATASETS[variant.dataset].num_classes
    confusion = confusion_matrix(labels, predicted, classes)
    # Accuracy from the same compiled inference the served model runs, so the gate's score
    # through the served path equals it (Keras's own metric may round differently).
    metrics = {
        "test/loss": float(scores["loss"]),
        "test/accuracy": float(np.trace(confusion) / max(len(labels), 1)),
    } | metrics
    if not uncertainty:
        return metrics, confusion, {}

    def score(stored: Examples) -> np.ndarray:
        batches = encoded_batches(stored, variant, SCORING_BATCH_ROWS)
        return class_probabilities(_outputs(model, batches)[0])

    def mc_score(stored: Examples) -> np.ndarray:
        batches = encoded_batches(stored, variant, SCORING_BATCH_ROWS)
        return class_probabilities(_outputs(model, batches, mc_samples)[1])

    extra, summary = uncertainty_summary(
        variant.dataset,
        examples,
        class_probabilities(probabilities),
        None if mc_outputs is None else class_probabilities(mc_outputs),
        score,
        mc_score if mc_samples else None,
        mc_samples,
        seed,
        variant.input_shape[0] if variant.input_encoding == "multi_hot" else 0,
    )
    metrics |= {f"test/{key}": value for key, value in extra.items()}
    return metrics, confusion, {"variant": variant.name, **summary}


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve; NaN when only one class is present."""
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores)) if len(np.unique(labels)) == 2 else float("nan")


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, classes: int) -> np.ndarray:
    return np.bincount(labels * classes + predicted, minlength=classes * classes).reshape(
        classes, classes
    )


def configure_runtime() -> None:
    """Deterministic TensorFlow ops, so one seed and profile give the same metrics, and no
    Keras progress bars. Call it in every thread that runs Keras: Keras keeps its logging
    switch per thread."""
    tf.config.experimental.enable_op_determinism()
    keras.utils.disable_interactive_logging()  # progress goes through our own epoch lines
