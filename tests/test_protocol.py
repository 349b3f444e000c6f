"""The book's protocol (``--protocol book``): every training row trains and the test rows
validate, as the book's notebook 4.4 does; its trials never reuse the lecture's."""

from __future__ import annotations

import numpy as np
import pytest

from keras_variants.config.pipeline import build_config
from keras_variants.config.trials import trials
from keras_variants.data.datasets import Dataset, Examples, make_splits, split_rows
from keras_variants.tracking.trial_key import REUSED_FROM_TAG, trial_key_for


def _dataset(name: str = "imdb") -> Dataset:
    """Train rows labelled 0-99 and test rows 1000-1039, so a split shows where it came from."""
    train = np.arange(100, dtype=np.int64).reshape(100, 1)
    test = np.arange(1000, 1040, dtype=np.int64).reshape(40, 1)
    return Dataset(name, Examples(train, train[:, 0]), Examples(test, test[:, 0]))


@pytest.mark.parametrize("dataset", ["imdb", "mnist"])
def test_the_book_protocol_trains_on_every_row_and_validates_on_test(dataset: str) -> None:
    data = _dataset(dataset)
    lecture = build_config(profile="smoke", workdir="/nonexistent")
    book = build_config(profile="smoke", workdir="/nonexistent", protocol="book")
    assert (lecture.profile.validation, book.profile.validation) == ("held_out", "test")
    held_out = make_splits(data, lecture.profile.model_copy(update={"train_rows": None}), 0)
    assert len(held_out.train) + len(held_out.validation) == 100
    assert held_out.validation.labels.max() < 100  # training rows
    splits = make_splits(data, book.profile.model_copy(update={"train_rows": None}), 0)
    assert sorted(splits.train.labels) == list(range(100))  # every training row trains
    assert np.array_equal(splits.validation.labels, splits.test.labels)
    assert splits.validation.labels.min() >= 1000  # the test rows
    rows = split_rows(data, book.profile, 3)
    assert np.array_equal(rows["validation"], rows["test"])


def test_a_book_protocol_trial_has_its_own_key() -> None:
    lecture = build_config(workdir="/nonexistent", variants=("imdb_dense",))
    book = build_config(workdir="/nonexistent", variants=("imdb_dense",), protocol="book")
    (trial,) = trials(("imdb_dense",), (0,), {})
    fingerprints = {"imdb.npz": "ab" * 32}
    keys = {trial_key_for(c, trial, fingerprints, "float32") for c in (lecture, book)}
    assert len(keys) == 2


def test_a_book_run_validates_on_test_and_reuses_no_lecture_trial(
    prefect_server, data_slices, tmp_path
) -> None:
    """Real Keras on the slices, one MLflow store: a lecture run, then a book run of the
    same trial. The book run trains anew (no reuse), on all 1,000 training rows, and its
    last validation accuracy is its test accuracy: the same 500 test rows."""
    from flows.pipeline import pipeline
    from keras_variants.tracking.store import client_for

    settings = {"profile": "smoke", "data_dir": data_slices, "workdir": tmp_path}
    settings |= {"variants": ("imdb_dense",), "promote": False}
    pipeline(build_config(**settings))
    book = build_config(**settings, protocol="book")
    result = pipeline(book)
    client = client_for(book)
    run = client.get_run(result.outcomes[0].run_id)
    assert REUSED_FROM_TAG not in run.data.tags
    assert run.data.tags["protocol"] == run.data.params["protocol"] == "book"
    assert (run.data.params["train_rows"], run.data.params["validation_rows"]) == ("1000", "500")
    history = client.get_metric_history(run.info.run_id, "val/accuracy")
    last = max(history, key=lambda m: m.step).value
    assert last == pytest.approx(run.data.metrics["test/accuracy"], abs=1e-6)
    page = result.report.read_text()
    assert "book: trains on all training rows and validates on the test rows" in page
