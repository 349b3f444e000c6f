"""The train, validation and test splits of a data set, per data set and profile."""

from __future__ import annotations

import numpy as np

from keras_variants.config.pipeline import PROFILES
from keras_variants.data.datasets import Dataset, Examples, make_splits


def _dataset(name: str, train: int, test: int) -> Dataset:
    def examples(n: int) -> Examples:
        return Examples(np.arange(n * 4, dtype=np.int32).reshape(n, 2, 2), np.arange(n) % 2)

    return Dataset(name=name, train=examples(train), test=examples(test))


def test_mnist_holds_out_the_last_rows_and_keeps_the_whole_test_split() -> None:
    splits = make_splits(_dataset("mnist", 100, 30), PROFILES["full"].model_copy(
        update={"validation_rows": 20}), seed=0)  # fmt: skip
    assert splits.train.labels.tolist() == (np.arange(80) % 2).tolist()
    np.testing.assert_array_equal(
        splits.validation.inputs, _dataset("mnist", 100, 0).train.inputs[80:]
    )
    assert splits.test_rows.tolist() == list(range(30))


def test_imdb_shuffles_then_holds_out_and_the_smoke_profile_caps_rows() -> None:
    data = _dataset("imdb", 2_000, 1_000)
    smoke = PROFILES["smoke"]  # 1,000 train rows (200 for validation), 500 test rows
    first, again, other = (make_splits(data, smoke, seed) for seed in (0, 0, 1))
    assert (len(first.train), len(first.validation), len(first.test)) == (800, 200, 500)
    np.testing.assert_array_equal(first.train.inputs, again.train.inputs)  # seeded
    assert not np.array_equal(first.train.inputs, other.train.inputs)
    train = {bytes(x) for x in first.train.inputs}
    assert not train & {bytes(x) for x in first.validation.inputs}  # disjoint
    assert first.test_rows.tolist() == sorted(first.test_rows.tolist())
    assert len(set(first.test_rows.tolist())) == 500
