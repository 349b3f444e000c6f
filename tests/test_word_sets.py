"""IMDb trains on word-id sets (model/word_sets.py): the same model and math as on multi-hot
rows. A training step of the word-set twin gives the multi-hot Dense model's weights, l2
and dropout included, and what training returns is the lecture's Dense model."""

from __future__ import annotations

import itertools
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_variants.config.pipeline import PROFILES
from keras_variants.config.variants import VARIANTS
from keras_variants.data.datasets import load_dataset, make_splits
from keras_variants.data.preprocessing import encode_inputs, word_sets
from keras_variants.data.ragged import Ragged
from keras_variants.model.builders import build_model
from keras_variants.model.training import encoded_batches, train_and_evaluate, word_set_batches
from keras_variants.model.word_sets import WordSetDense, word_set_twin

IMDB_VARIANTS = [name for name, v in VARIANTS.items() if v.input_encoding == "multi_hot"]
# float32 sums in another order: the first layer sums ~130 kernel rows where the matmul
# sums 10,000 products. Measured: differences below 1e-7 after a step, 6e-8 after training.
STEP_TOLERANCE = 1e-6


@pytest.mark.parametrize("width", [10, 40_000])  # ids that fit 16 bits, and ones past
def test_word_sets_are_the_columns_a_multi_hot_row_marks(width: int) -> None:
    # repeated words, an empty row, an id past the width (a multi-hot row drops it)
    ids = Ragged(np.array([5, 1, 5, 9, 2, width - 1, 3, 2, width + 4]), np.array([0, 4, 4, 9]))
    variant = VARIANTS["imdb_dense"].model_copy(update={"input_shape": (width,)})
    sets = word_sets(ids, width)
    multi_hot = encode_inputs(ids, variant)
    for row, (start, stop) in enumerate(itertools.pairwise(sets.offsets)):
        assert sets.values[start:stop].tolist() == np.flatnonzero(multi_hot[row]).tolist()
    assert sets.values.tolist() == [1, 5, 9, 2, 3, width - 1]
    np.testing.assert_array_equal(encode_inputs(sets, variant), multi_hot)


@pytest.fixture(scope="module")
def imdb_splits(data_slices: Path):
    return make_splits(load_dataset("imdb", data_slices, 10_000), PROFILES["smoke"], seed=0)


def test_word_set_batches_are_the_training_batches_row_for_row(imdb_splits) -> None:
    variant = VARIANTS["imdb_dense"]
    plain = encoded_batches(imdb_splits.train, variant, 100, shuffle_seed=7)
    sets = word_set_batches(imdb_splits.train, variant, 100, shuffle_seed=7)
    assert isinstance(sets.element_spec[0], tf.SparseTensorSpec)  # never a dense multi-hot row
    batches = 0
    for (x, y), (words, y_sets) in zip(plain, sets, strict=True):
        assert words.dtype == tf.float32 and words.dense_shape.numpy().tolist() == list(x.shape)
        np.testing.assert_array_equal(tf.sparse.to_dense(words).numpy(), x.numpy())
        np.testing.assert_array_equal(y_sets.numpy(), y.numpy())
        batches += 1
    assert batches == -(-len(imdb_splits.train) // 100) > 1


@pytest.mark.parametrize("name", IMDB_VARIANTS)
def test_a_training_step_gives_the_dense_models_weights(imdb_splits, name: str) -> None:
    """From the same weights, one step (and two more, where RMSprop's averages matter) of
    the twin on word sets and of the Dense model on multi-hot rows end at the same weights:
    the same gradient, the same l2 penalty, the same dropout masks."""
    variant = VARIANTS[name]
    dense = build_model(variant, seed=3)
    trained_on_sets = build_model(variant, seed=3)  # same seeds: same weights and masks
    twin = word_set_twin(trained_on_sets, variant)
    before = [w.copy() for w in dense.get_weights()]
    for w, w_sets in zip(before, trained_on_sets.get_weights(), strict=True):
        np.testing.assert_array_equal(w, w_sets)
    plain = encoded_batches(imdb_splits.train, variant, 64, shuffle_seed=0)
    sets = word_set_batches(imdb_splits.train, variant, 64, shuffle_seed=0)
    pairs = itertools.islice(zip(plain, sets, strict=True), 3)
    for step, ((x, y), (words, _)) in enumerate(pairs):
        loss = dense.train_on_batch(x, y, return_dict=True)["loss"]
        loss_sets = twin.train_on_batch(words, y, return_dict=True)["loss"]
        assert loss_sets == pytest.approx(loss, rel=1e-6, abs=1e-7), step  # l2 included
        for w, w_sets in zip(dense.get_weights(), trained_on_sets.get_weights(), strict=True):
            np.testing.assert_allclose(w_sets, w, rtol=0, atol=STEP_TOLERANCE, err_msg=str(step))
    moved = [np.abs(w - w0).max() for w, w0 in zip(dense.get_weights(), before, strict=True)]
    assert min(moved) > 100 * STEP_TOLERANCE  # every variable moved far more than the tolerance
    if variant.l2:
        assert sum(float(loss) for loss in twin.losses) > 0
        assert len(twin.losses) == len(dense.losses)


def test_dropout_masks_act_on_the_same_activations(imdb_splits) -> None:
    """The check above can see a mask: with the Dense model's dropout masks drawn one draw
    later, the same step ends elsewhere."""
    variant = VARIANTS["imdb_dropout"]
    dense, other_masks = build_model(variant, seed=3), build_model(variant, seed=3)
    for layer in other_masks.layers:
        if isinstance(layer, keras.layers.Dropout):
            layer.seed_generator.next()  # the next draw: other masks
    (x, y), *_ = encoded_batches(imdb_splits.train, variant, 64, shuffle_seed=0).take(1)
    dense.train_on_batch(x, y)
    other_masks.train_on_batch(x, y)
    pairs = zip(dense.get_weights(), other_masks.get_weights(), strict=True)
    gaps = [np.abs(a - b).max() for a, b in pairs]
    assert max(gaps) > 100 * STEP_TOLERANCE


def test_training_returns_the_dense_model_it_trained(imdb_splits, monkeypatch) -> None:
    """What training returns (and so what is evaluated, saved and served) is the lecture's
    Dense model of multi-hot rows, with the twin's trained weights and optimizer state:
    the same weights as training the Dense model itself on the same batches. No multi-hot
    batch of the training or validation rows is built: only the test rows are encoded so."""
    from keras_variants.model import training

    variant = VARIANTS["imdb_l2"]
    multi_hot_of = []

    def spy(examples, *args, **kwargs):
        multi_hot_of.append(examples)
        return encoded_batches(examples, *args, **kwargs)

    monkeypatch.setattr(training, "encoded_batches", spy)
    result = train_and_evaluate(variant, imdb_splits, epochs=2, seed=5, steps_per_execution=4)
    assert multi_hot_of and not any(
        examples is imdb_splits.train or examples is imdb_splits.validation
        for examples in multi_hot_of
    )
    monkeypatch.undo()
    model = result.model
    assert isinstance(model.layers[0], keras.layers.Dense)
    assert not any(isinstance(layer, WordSetDense) for layer in model.layers)
    assert model.input_shape == (None, 10_000)
    steps_per_epoch = -(-len(imdb_splits.train) // 512)
    assert int(model.optimizer.iterations.numpy()) == 2 * steps_per_epoch
    dense = build_model(variant, seed=5, steps_per_execution=4)
    batches = encoded_batches(imdb_splits.train, variant, 512, shuffle_seed=5)
    dense.fit(batches, epochs=2, verbose=0, shuffle=False)
    for w, w_dense in zip(model.get_weights(), dense.get_weights(), strict=True):
        np.testing.assert_allclose(w, w_dense, rtol=0, atol=10 * STEP_TOLERANCE)
    assert result.history["val/loss"] and 0.0 <= result.test_metrics["test/accuracy"] <= 1.0
