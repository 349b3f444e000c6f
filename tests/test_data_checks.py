"""Great Expectations suites: each check fails on a purposely broken file, passes on real data."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from data_checks.checks import validate_dataset
from keras_variants.data.datasets import load_dataset
from tests.conftest import rewrite_npz
from tests.helpers import Processes


def _failures(data_dir: Path, name: str) -> str:
    outcome = validate_dataset(load_dataset(name, data_dir))
    assert not outcome.success, "expected the checks to fail"
    return "\n".join(outcome.failures)


@pytest.mark.parametrize("name", ["mnist", "imdb"])
def test_real_slices_pass(data_slices: Path, name: str) -> None:
    outcome = validate_dataset(load_dataset(name, data_slices))
    assert outcome.success, outcome.failures
    assert outcome.checked > 20


def _mnist(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as npz:
        return {k: npz[k].copy() for k in npz.files}


def _imdb(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=True) as npz:  # trusted: the fixture wrote it
        return {k: npz[k].copy() for k in npz.files}


def _objects(rows: list[list[float]]) -> np.ndarray:
    out = np.empty(len(rows), dtype=object)
    out[:] = rows
    return out


def labels_out_of_range(a):
    a["y_train"][7] = 10
    return a


def single_class(a):
    a["y_train"][:] = 3
    return a


def wrong_shape(a):
    a["x_test"] = a["x_test"][:, :27, :]
    return a


def length_mismatch(a):
    a["y_train"] = a["y_train"][:-5]
    return a


def empty_arrays(a):
    a["x_test"], a["y_test"] = a["x_test"][:0], a["y_test"][:0]
    return a


def nan_pixels(a):
    x = a["x_train"].astype(np.float32)
    x[3, 4, 5] = np.nan
    a["x_train"] = x
    return a


def pixels_out_of_range(a):
    x = a["x_train"].astype(np.int16)
    x[0, 0, 0] = 300
    a["x_train"] = x
    return a


def inverted_images(a):
    """Same shapes, labels and dtype, but not MNIST's distribution."""
    a["x_train"] = 255 - a["x_train"]
    return a


MNIST_BREAKS: list[tuple[Callable, str]] = [
    (labels_out_of_range, r"y_train \(label\): labels are digits 0-9.*10 \(first at row 7\)"),
    (single_class, r"y_train \(label\): all ten digits are present"),
    (wrong_shape, r"x_test \(image_shape\): images are 28x28 pixels.*27x28"),
    (length_mismatch, r"x_train \(x_rows\): every image has exactly one label"),
    (empty_arrays, r"x_test \(x_rows\): a split must not be empty"),
    (nan_pixels, r"x_train \(non_finite_pixels\): no NaN or infinite pixels.*row 3"),
    (pixels_out_of_range, r"x_train \(pixel_max\): pixel intensities are 0-255.*300"),
    (inverted_images, r"x_train \(mean_intensity\): mean intensity of real MNIST"),
]


@pytest.mark.parametrize("breaks,message", MNIST_BREAKS, ids=[b.__name__ for b, _ in MNIST_BREAKS])
def test_mnist_check_fails_on_broken_file(broken_dir: Path, breaks, message: str) -> None:
    path = broken_dir / "mnist.npz"
    np.savez(path, **breaks(_mnist(path)))
    assert re.search(message, _failures(broken_dir, "mnist"))


def empty_review(a):
    a["x_train"][2] = []
    return a


def rank_past_vocabulary(a):
    a["x_test"][4] = [*a["x_test"][4], 10_000_000]
    return a


def negative_rank(a):
    a["x_train"][0] = [-1, *a["x_train"][0]]
    return a


def nan_rank(a):
    a["x_train"][1] = [float("nan"), *a["x_train"][1]]
    return a


def imdb_single_class(a):
    a["y_test"][:] = 1
    return a


def imdb_labels_out_of_range(a):
    a["y_train"][9] = 2
    return a


def random_ranks(a):
    """Same lengths and labels, but words drawn uniformly: not English text."""
    rng = np.random.default_rng(0)
    a["x_train"] = _objects([list(rng.integers(1, 80_000, len(r))) for r in a["x_train"]])
    return a


IMDB_BREAKS: list[tuple[Callable, str]] = [
    (empty_review, r"x_train \(length\): no review is empty.*first at row 2"),
    (rank_past_vocabulary, r"x_test \(max_rank\): word ranks lie within the \d+-word vocabulary"),
    (negative_rank, r"x_train \(min_rank\): word ranks start at 1"),
    (nan_rank, r"x_train \(non_integer_values\): word ranks are whole numbers"),
    (imdb_single_class, r"y_test \(label\): both sentiments are present"),
    (imdb_labels_out_of_range, r"y_train \(label\): labels are 0 \(negative\) or 1"),
    (random_ranks, r"x_train \(top100_word_share\)"),
]


@pytest.mark.parametrize("breaks,message", IMDB_BREAKS, ids=[b.__name__ for b, _ in IMDB_BREAKS])
def test_imdb_check_fails_on_broken_file(broken_dir: Path, breaks, message: str) -> None:
    path = broken_dir / "imdb.npz"
    rewrite_npz(path, **breaks(_imdb(path)))
    assert re.search(message, _failures(broken_dir, "imdb"))


def test_validate_flow_passes_on_real_slices(prefect_server, data_slices: Path, tmp_path) -> None:
    from flows.validate import validate_data
    from keras_variants.config.pipeline import build_config

    summaries = validate_data(build_config(data_dir=data_slices, workdir=tmp_path))
    assert set(summaries) == {"mnist", "imdb"}
    assert summaries["mnist"]["classes"] == list(range(10))
    assert len(summaries["imdb"]["fingerprints"]["imdb.npz"]) == 64
    # The GX results are kept (by this run, or by the earlier run whose cached result this is).
    assert Path(summaries["mnist"]["results"]).is_file()


def test_cli_validate_fails_clearly(broken_dir: Path, tmp_path: Path, processes: Processes) -> None:
    path = broken_dir / "mnist.npz"
    np.savez(path, **labels_out_of_range(_mnist(path)))
    done = processes.run(
        [sys.executable, "-m", "keras_variants", "validate", "--data-dir", str(broken_dir)],
        timeout=300,
    )
    assert done.returncode == 1
    assert "mnist.npz: y_train (label): labels are digits 0-9" in done.stderr
    assert (tmp_path / "reports" / "validation").is_dir()
