"""Reading npz files: corrupt, truncated and incomplete files are refused clearly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from keras_variants.data.datasets import SPLIT_KEYS, load_imdb
from keras_variants.data.npz import read_npz
from keras_variants.errors import DataError
from tests.conftest import npz_with_member


def test_real_object_arrays_load_without_numpy_pickle(data_slices: Path) -> None:
    npz = read_npz(data_slices / "imdb.npz", SPLIT_KEYS)
    with np.load(data_slices / "imdb.npz", allow_pickle=True) as trusted:
        assert npz.array("x_train")[3] == trusted["x_train"][3]
    assert len(npz.sha256) == 64


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"mnist\.npz: file not found"):
        read_npz(tmp_path / "mnist.npz", SPLIT_KEYS)


def test_not_a_zip(tmp_path: Path) -> None:
    (tmp_path / "mnist.npz").write_text("hello")
    with pytest.raises(DataError, match=r"mnist.npz: not a valid .npz \(zip\) archive"):
        read_npz(tmp_path / "mnist.npz", SPLIT_KEYS)


def test_truncated_file(data_slices: Path, tmp_path: Path) -> None:
    raw = (data_slices / "mnist.npz").read_bytes()
    (tmp_path / "mnist.npz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match=r"mnist\.npz"):
        read_npz(tmp_path / "mnist.npz", SPLIT_KEYS)


def test_truncated_array_data(tmp_path: Path) -> None:
    header = {"descr": "|u1", "fortran_order": False, "shape": (10, 28, 28)}
    npz_with_member(tmp_path / "mnist.npz", "x_train", b"\0" * 100, header)
    with pytest.raises(DataError, match=r"mnist\.npz: x_train: array data is truncated"):
        read_npz(tmp_path / "mnist.npz", ("x_train",)).array("x_train")


def test_missing_key(tmp_path: Path) -> None:
    np.savez(tmp_path / "mnist.npz", x_train=np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(DataError, match=r"mnist.npz: y_train, x_test, y_test: missing key"):
        read_npz(tmp_path / "mnist.npz", SPLIT_KEYS)


def test_imdb_follows_keras_load_data_rules(tmp_path: Path) -> None:
    sequences = np.empty(2, dtype=object)
    sequences[:] = [[1, 2, 9_997], [5]]
    np.savez(
        tmp_path / "imdb.npz",
        x_train=sequences,
        y_train=np.array([0, 1]),
        x_test=sequences,
        y_test=np.array([1, 0]),
    )
    data = load_imdb(tmp_path / "imdb.npz", num_words=10_000)
    ragged = data.train.inputs
    # start_char 1, ranks shifted by 3, 9_997 + 3 = num_words becomes oov_char 2
    assert ragged.values[ragged.offsets[0] : ragged.offsets[1]].tolist() == [1, 4, 5, 2]
    assert ragged.values[ragged.offsets[1] : ragged.offsets[2]].tolist() == [1, 8]
