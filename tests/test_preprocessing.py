"""Input encoding: multi-hot rows from word ids."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from keras_variants.config.variants import VARIANTS
from keras_variants.data.ragged import Ragged


@pytest.mark.parametrize("width", [10, 40_000])  # word ids that fit 16 bits, and ones past
def test_multi_hot_rows_mark_each_word_id_once(width: int) -> None:
    from keras_variants.data.preprocessing import encode_inputs

    ids = Ragged(np.array([1, 5, 5, 9, 2, width - 1, 3]), np.array([0, 4, 4, 7]))
    variant = VARIANTS["imdb_dense"].model_copy(update={"input_shape": (width,)})
    expected = np.zeros((3, width), np.float32)
    for row, (start, stop) in enumerate(itertools.pairwise(ids.offsets)):
        expected[row, ids.values[start:stop]] = 1.0
    np.testing.assert_array_equal(encode_inputs(ids, variant), expected)
