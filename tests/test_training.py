"""Training input pipeline: the tf.data batches equal the preprocessing the gate and the
served model use, row for row."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from keras_variants.config.pipeline import PROFILES
from keras_variants.config.variants import DATASETS, VARIANTS
from keras_variants.data.datasets import load_dataset, make_splits
from keras_variants.data.preprocessing import encode_inputs, encode_labels
from keras_variants.model.training import encoded_batches


@pytest.mark.parametrize("name", ["mnist_dense", "mnist_cnn", "imdb_dense"])
def test_batches_match_the_preprocessing(data_slices: Path, name: str) -> None:
    variant = VARIANTS[name]
    head = DATASETS[variant.dataset]
    data = load_dataset(variant.dataset, data_slices, 10_000)
    test = make_splits(data, PROFILES["smoke"], seed=0).test
    x = np.concatenate([x for x, _ in encoded_batches(test, variant, batch_size=64)])
    y = np.concatenate([y for _, y in encoded_batches(test, variant, batch_size=64)])
    assert x.dtype == np.float32 and x.shape == (len(test), *variant.input_shape)
    expected = encode_inputs(test.inputs, variant)
    np.testing.assert_array_equal(x, expected)
    labels = encode_labels(test.labels, head)
    np.testing.assert_array_equal(y, labels)


def test_shuffled_batches_are_a_seeded_permutation(data_slices: Path) -> None:
    variant = VARIANTS["imdb_dense"]
    train = make_splits(load_dataset("imdb", data_slices, 10_000), PROFILES["smoke"], 0).train
    first = [y for _, y in encoded_batches(train, variant, batch_size=100, shuffle_seed=7)]
    again = [y for _, y in encoded_batches(train, variant, batch_size=100, shuffle_seed=7)]
    np.testing.assert_array_equal(np.concatenate(first), np.concatenate(again))
    assert sorted(np.concatenate(first).tolist()) == sorted(train.labels.astype(float).tolist())
    shuffled = np.concatenate(
        [x.numpy().sum(axis=1) for x, _ in encoded_batches(train, variant, 100, 7)]
    )
    stored = np.concatenate(
        [x.numpy().sum(axis=1) for x, _ in encoded_batches(train, variant, 100)]
    )
    assert not np.array_equal(shuffled, stored)
    np.testing.assert_array_equal(np.sort(shuffled), np.sort(stored))
