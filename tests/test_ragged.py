"""Ragged rows (IMDb's word ids) and the example views taken of them: rows picked in the
order asked, consecutive rows a view of the same memory."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from keras_variants.data.datasets import Examples
from keras_variants.data.ragged import Ragged


def test_ragged_take_picks_rows_in_the_order_asked() -> None:
    rows = Ragged(np.array([1, 2, 3, 4, 5, 6]), np.array([0, 2, 2, 5, 6]))  # [1 2] [] [3 4 5] [6]
    taken = rows.take(np.array([3, 0, 1, 2]))
    assert taken.offsets.tolist() == [0, 1, 3, 3, 6]
    assert taken.values.tolist() == [6, 1, 2, 3, 4, 5]
    assert rows.take(np.array([], dtype=int)).offsets.tolist() == [0]


@pytest.mark.parametrize("cuts", [[4], [1, 4], [0, 2, 3, 4], [2, 2, 4]])
def test_ragged_batches_concatenate_back_into_the_rows(cuts: list[int]) -> None:
    rows = Ragged(np.array([1, 2, 3, 4, 5, 6]), np.array([0, 2, 2, 5, 6]))  # [1 2] [] [3 4 5] [6]
    parts = [rows.take(slice(a, b)) for a, b in itertools.pairwise([0, *cuts])]
    joined = Ragged.concatenate(parts)
    assert joined.offsets.tolist() == rows.offsets.tolist()
    assert joined.values.tolist() == rows.values.tolist()
    assert joined.offsets.dtype == rows.offsets.dtype


@pytest.mark.parametrize("picked", [[1, 2, 3], [0], [2, 3], [3]])
def test_consecutive_rows_are_a_view_of_the_same_rows(picked: list[int]) -> None:
    rows = Ragged(np.array([1, 2, 3, 4, 5, 6]), np.array([0, 2, 2, 5, 6]))  # [1 2] [] [3 4 5] [6]
    view = Examples(rows, np.arange(4)).take(np.array(picked))
    expected = [rows.values[rows.offsets[i] : rows.offsets[i + 1]].tolist() for i in picked]
    got = view.inputs
    assert [got.values[a:b].tolist() for a, b in itertools.pairwise(got.offsets)] == expected
    assert view.labels.tolist() == picked
    assert np.shares_memory(got.values, rows.values) or not len(got.values)
    images = Examples(np.arange(8).reshape(4, 2), np.arange(4))
    taken = images.take(np.array(picked))
    assert np.shares_memory(taken.inputs, images.inputs)
    np.testing.assert_array_equal(taken.inputs, images.inputs[picked])
