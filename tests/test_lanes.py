"""Lanes: training in lean processes gives what training here gives, failures in a lane
reach the caller, and the lanes go on."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from keras_variants.config.pipeline import PROFILES, build_config
from keras_variants.config.variants import VARIANTS
from keras_variants.data.datasets import MappedDataset
from keras_variants.lanes.jobs import TrainJob
from keras_variants.lanes.pool import ProcessLanes


def test_a_failure_in_a_lane_reaches_the_caller_and_the_lane_goes_on(tmp_path: Path) -> None:
    lanes = ProcessLanes(workers=1, threads=1)
    try:
        with pytest.raises(ValueError, match="invalid literal"):
            lanes.call(int, "not a number")
        missing = MappedDataset("mnist", str(tmp_path / "gone"), {}, {}, None)
        job = TrainJob(VARIANTS["mnist_dense"], 0, PROFILES["smoke"], missing, "", str(tmp_path))
        with pytest.raises(FileNotFoundError, match="gone"):
            lanes.train(job, lambda *report: None)
        assert lanes.call(os.getpid) != os.getpid()  # still there, in another process
    finally:
        lanes.close(interrupted=False)


@pytest.mark.slow
def test_lanes_and_this_process_train_the_same_models(smoke_run, data_slices, tmp_path) -> None:
    """The session's smoke run trains in lanes; the same trials here, with the threads
    runner, give the same results: equal up to float rounding, since a lane runs one
    TensorFlow thread per op and this process two, which sums in another order. Over two
    epochs that rounding grows: up to 0.35% in a loss measured on a loaded two-core machine,
    so losses agree within 1% (another seed or data slice moves them by several %)."""
    from flows.pipeline import pipeline

    variants = ("mnist_cnn", "imdb_dropout")
    here = pipeline(
        build_config(
            profile="smoke",
            data_dir=data_slices,
            workdir=tmp_path,
            variants=variants,
            runner="threads",
        )
    )
    for label in variants:
        lane, local = smoke_run.variants[label], here.variants[label]
        assert local.test_metrics["test/accuracy"] == pytest.approx(
            lane.test_metrics["test/accuracy"], abs=0.006
        ), label  # 3 of 500 test rows
        for key in ("test/loss", "test/brier", "test/nll"):
            assert local.test_metrics[key] == pytest.approx(lane.test_metrics[key], rel=1e-2), key
        for key in ("val/loss_min", "val/loss_last"):
            assert local.measures[key] == pytest.approx(lane.measures[key], rel=1e-2), key
