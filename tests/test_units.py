"""Small pure pieces, tested directly: ragged rows, splits, AUC, findings."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from keras_variants.config.pipeline import PROFILES
from keras_variants.config.variants import VARIANTS
from keras_variants.data.datasets import Dataset, Examples, make_splits
from keras_variants.data.ragged import Ragged
from keras_variants.model.training import roc_auc
from keras_variants.reporting.findings import findings_for, groups
from keras_variants.tracking.records import VariantRecord


def test_ragged_take_picks_rows_in_the_order_asked() -> None:
    rows = Ragged(np.array([1, 2, 3, 4, 5, 6]), np.array([0, 2, 2, 5, 6]))  # [1 2] [] [3 4 5] [6]
    taken = rows.take(np.array([3, 0, 1, 2]))
    assert taken.offsets.tolist() == [0, 1, 3, 3, 6]
    assert taken.values.tolist() == [6, 1, 2, 3, 4, 5]
    assert rows.take(np.array([], dtype=int)).offsets.tolist() == [0]


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


@pytest.mark.parametrize(
    ("labels", "scores", "auc"),
    [
        ([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9], 1.0),
        ([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1], 0.0),
        ([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5], 0.5),  # ties count half
        ([0, 1, 1], [0.3, 0.2, 0.4], 0.5),
    ],
)
def test_roc_auc(labels: list[int], scores: list[float], auc: float) -> None:
    assert roc_auc(np.array(labels), np.array(scores)) == pytest.approx(auc)


def test_roc_auc_of_one_class_is_nan() -> None:
    assert math.isnan(roc_auc(np.array([1, 1]), np.array([0.2, 0.4])))


def _record(variant: str, val_loss: list[float], seed: int = 0, **metrics: float) -> VariantRecord:
    return VariantRecord(
        variant=variant,
        dataset="imdb",
        run_id=f"{variant}-{seed}",
        params={"seed": str(seed)},
        metrics={"val/accuracy": 0.8, "test/accuracy": 0.8} | metrics,
        tags={},
        curves={"val/loss": val_loss, "train/loss": [0.5] * len(val_loss)},
    )


def test_findings_state_where_each_variant_overfits_and_who_wins() -> None:
    dense = _record("imdb_dense", [0.40, 0.30, 0.35, 0.50], **{"val/accuracy": 0.85})
    reduced = _record("imdb_reduced", [0.50, 0.40, 0.35, 0.33], **{"test/accuracy": 0.86})
    assert findings_for("imdb", [dense, reduced]) == [
        "imdb_dense starts to overfit after epoch 2 of 4 (lowest validation loss 0.3000).",
        "imdb_reduced was still improving at its last epoch (4) (lowest validation loss "
        "0.3300); imdb_dense starts to overfit after epoch 2 of 4, and its final validation "
        "loss is 0.1700 higher.",
        "Best on validation accuracy: imdb_dense (0.8500); best test accuracy: imdb_reduced "
        "(0.8600).",
    ]


def test_findings_name_the_mean_of_the_seeds_lowest_loss_and_its_epoch() -> None:
    """Seed 0 is lowest at epoch 1 (1.0), seed 1 at epoch 4 (0.5): the findings say epoch
    2.5 and 0.75, as the table, the claims and the sweep findings do, not the lowest point
    of the mean curve (2.25 at epoch 4)."""
    seeds = [
        _record("imdb_dropout", [1.0, 2.0, 3.0, 4.0], 0, validation_loss_min_epoch=1),
        _record("imdb_dropout", [5.0, 4.0, 3.0, 0.5], 1, validation_loss_min_epoch=4),
    ]
    seeds[0].metrics["val/loss_min"], seeds[1].metrics["val/loss_min"] = 1.0, 0.5
    (group,) = groups(seeds)
    assert findings_for("imdb", [group.mean])[0] == (
        "imdb_dropout starts to overfit after epoch 2.5 of 4 (lowest validation loss 0.7500)."
    )


def test_groups_average_seeds_curve_by_curve() -> None:
    (group,) = groups([_record("imdb_l2", [0.4, 0.2], 0), _record("imdb_l2", [0.6, 0.4], 1)])
    assert group.seeds == 2 and group.mean.curves["val/loss"] == pytest.approx([0.5, 0.3])
    assert group.spread["val/loss"] == pytest.approx([0.1414214, 0.1414214])


@pytest.mark.parametrize("width", [10, 40_000])  # word ids that fit 16 bits, and ones past
def test_multi_hot_rows_mark_each_word_id_once(width: int) -> None:
    from keras_variants.data.preprocessing import encode_inputs

    ids = Ragged(np.array([1, 5, 5, 9, 2, width - 1, 3]), np.array([0, 4, 4, 7]))
    variant = VARIANTS["imdb_dense"].model_copy(update={"input_shape": (width,)})
    expected = np.zeros((3, width), np.float32)
    for row, (start, stop) in enumerate(itertools.pairwise(ids.offsets)):
        expected[row, ids.values[start:stop]] = 1.0
    np.testing.assert_array_equal(encode_inputs(ids, variant), expected)


def _curves_of(label: str, val_loss: list[float]) -> VariantRecord:
    curves = {"train/loss": [1.0, 0.5], "val/loss": val_loss, "val/accuracy": [0.5, 0.6]}
    return VariantRecord(label, "mnist", "run", {"seed": "0"}, {}, {}, curves)


def test_a_reports_figures_are_drawn_again_only_when_a_curve_changed(tmp_path, monkeypatch):
    """The report's figure cache: the same curves give the same PNG files without drawing;
    another curve, or no cache, draws."""
    from keras_variants.reporting import report_figures
    from keras_variants.reporting.plots import figure_cache

    drawn: list[int] = []
    draw = report_figures._draw
    monkeypatch.setattr(report_figures, "_draw", lambda g: drawn.append(1) or draw(g))
    same = {"mnist": groups([_curves_of("mnist_dense", [0.9, 0.8])])}
    changed = {"mnist": groups([_curves_of("mnist_dense", [0.9, 0.7])])}
    with figure_cache(tmp_path):
        first = report_figures.figures(same)
        again = report_figures.figures(same)
        assert len(drawn) == 1 and again == first and first
        assert report_figures.figures(changed) != first and len(drawn) == 2
    report_figures.figures(same)
    assert len(drawn) == 3
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == sorted(
        p.name for p in tmp_path.iterdir()
    )  # no half-written entry left


class FutureCancelledError(Exception):
    """Named like Dask's: the classifier goes by names, so that it needs no Dask."""


class KilledWorker(Exception):
    pass


def _raised_from(cause: BaseException) -> BaseException:
    try:
        try:
            raise cause
        except BaseException as inner:
            raise RuntimeError("task failed") from inner
    except RuntimeError as outer:
        return outer


@pytest.mark.parametrize(
    ("cause", "expected"),
    [
        (FutureCancelledError("k cancelled for reason: scheduler-connection-lost."), "scheduler"),
        (KilledWorker("Attempted to run task k on 4 different workers"), "died each time"),
        (FutureCancelledError("k cancelled for reason: unknown."), None),  # e.g. Ctrl-C
        (ValueError("scheduler-connection-lost"), None),
    ],
)
def test_a_lost_dask_cluster_is_named_and_nothing_else(cause, expected) -> None:
    from keras_variants.lanes.cluster import lost_cluster

    error = lost_cluster(_raised_from(cause), "tcp://h:8786")
    if expected is None:
        assert error is None
    else:
        assert expected in str(error) and "tcp://h:8786" in str(error)


@pytest.mark.parametrize(
    ("message", "uri", "lost"),
    [
        ("API request to http://h:5000/api/2.0/mlflow/runs/log-batch failed with exception "
         "HTTPConnectionPool(host='h', port=5000): Max retries exceeded with url: ...",
         "http://h:5000", True),
        ("API request to http://h:5000/x failed with exception Max retries exceeded",
         "sqlite:///mlflow.db", False),  # not a server
        ("RESOURCE_DOES_NOT_EXIST: Run 'abc' not found", "http://h:5000", False),
    ],
)  # fmt: skip
def test_an_mlflow_server_that_stopped_answering_is_named(message, uri, lost) -> None:
    from mlflow.exceptions import MlflowException

    from keras_variants.tracking.store import lost_server

    error = lost_server(_raised_from(MlflowException(message)), uri)
    assert (error is not None) == lost
    if lost:
        assert f"MLflow tracking server {uri} stopped answering" in str(error)


@pytest.mark.parametrize(
    ("kept", "unused_s", "left"),
    [
        (2, 0.0, ["new", "mid"]),  # beyond the two most recent, all removed
        (2, 4 * 3600, ["new", "mid", "old"]),  # only those unused for four hours
        (5, 0.0, ["new", "mid", "old", "oldest"]),
    ],
)
def test_pruning_kept_folders_keeps_the_recent_and_removes_stale_half_written_ones(
    tmp_path, kept: int, unused_s: float, left: list[str]
) -> None:
    import os
    import time

    from keras_variants.kept_folders import prune

    now = time.time()
    ages = {"new": 0, "mid": 60, "old": 3 * 3600, "oldest": 3 * 24 * 3600,
            ".fresh.1": 60, ".stale.2": 2 * 3600}  # fmt: skip
    for name, age in ages.items():
        (tmp_path / name).mkdir()
        os.utime(tmp_path / name, (now - age, now - age))
    prune(tmp_path, kept, unused_s)
    remaining = sorted(p.name for p in tmp_path.iterdir())
    assert remaining == sorted([*left, ".fresh.1"])
