"""Lanes: training in lean processes gives what training here gives, failures in a lane
reach the caller, and the lanes go on."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from pathlib import Path

import pytest

from keras_variants import memory
from keras_variants.config.pipeline import PROFILES, build_config
from keras_variants.config.variants import VARIANTS
from keras_variants.data.mapped import MappedDataset
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


class _MallInfo2(ctypes.Structure):
    _fields_ = [  # glibc's struct mallinfo2
        (name, ctypes.c_size_t)
        for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd",
            "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost",
        )
    ]  # fmt: skip


def _allocations(input_encoding: str) -> tuple[int, int, int]:
    """In a lane: under the trial policy for ``input_encoding``, how many of three 4 MiB buffers
    came from mmap, and the heap's size with them freed, before and after releasing it."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.malloc.restype, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_void_p]
    libc.mallinfo2.restype = _MallInfo2
    memory.allocate_for(input_encoding)
    before = libc.mallinfo2().hblks
    buffers = [libc.malloc(4 * 2**20) for _ in range(3)]
    mapped = libc.mallinfo2().hblks - before
    for buffer in reversed(buffers):
        libc.free(buffer)
    kept = libc.mallinfo2().arena
    memory.release_memory()
    return mapped, kept, libc.mallinfo2().arena


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_a_lane_allocates_per_trial_and_gives_memory_back() -> None:
    """Multi-hot trials: every large buffer from mmap (returned when freed); others: from
    the heap, kept for the next step while the trial runs, returned after it."""
    lanes = ProcessLanes(workers=1, threads=1)
    try:
        mapped, _, _ = lanes.call(_allocations, "multi_hot")
        assert mapped == 3
        mapped, kept, after = lanes.call(_allocations, "pixels_image")
        assert mapped == 0
        assert kept - after >= 12 * 2**20  # freed buffers stayed in the heap until given back
        mapped, _, _ = lanes.call(_allocations, "multi_hot")  # and the lean policy comes back
        assert mapped == 3
    finally:
        lanes.close(interrupted=False)


def test_lanes_start_with_the_run_only_when_no_trial_can_be_reused(tmp_path: Path) -> None:
    """--force or a local store not made yet: every trial trains, so the lanes start their
    imports at once; an existing store or a server may hold reusable trials."""
    from keras_variants.lanes.pool import reuses_nothing

    new = build_config(profile="smoke", workdir=tmp_path)
    assert reuses_nothing(new)
    (tmp_path / "mlflow.db").write_bytes(b"")
    assert new.tracking_uri == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert not reuses_nothing(new)
    assert reuses_nothing(new.model_copy(update={"force": True}))
    server = build_config(profile="smoke", workdir=tmp_path, tracking_uri="http://127.0.0.1:5000")
    assert not reuses_nothing(server)


@pytest.mark.parametrize(
    ("max_parallel", "trials", "lanes"),
    [
        (2, 6, 2),  # the lecture: two lanes
        (2, 1, 1),  # one trial: one lane, with every core
        (4, 3, 3),
        (1, 6, 1),
        (2, 0, 1),  # a run that trains nothing still has a lane for its checks
        (3, None, 3),  # --seeds auto: trials come later
    ],
)
def test_a_run_starts_no_more_lanes_than_it_has_trials(
    max_parallel: int, trials: int | None, lanes: int
) -> None:
    from keras_variants.lanes.pool import lane_count

    assert lane_count(max_parallel, trials) == lanes
