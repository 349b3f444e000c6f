"""A rerun on unchanged data maps what was read before and skips validation; a changed file
is read and validated again."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from prefect import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.sorting import TaskRunSort

from flows.validate import validate_data
from keras_variants.config.pipeline import build_config
from tests.conftest import rewrite_npz
from tests.helpers import wait_for


def _task_states(flow_run_id) -> dict[str, str]:
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
            sort=TaskRunSort.EXPECTED_START_TIME_ASC,
            limit=50,
        )
    return {run.name: run.state.name for run in runs}


TASKS = {"ingest-mnist", "ingest-imdb", "validate-mnist", "validate-imdb"}


def _validate(config) -> dict[str, str]:
    """The flow's task states once the server has recorded the last of them (it records
    them from events, after the flow has returned)."""
    state = validate_data(config, return_state=True)
    assert state.is_completed()

    def recorded() -> dict[str, str] | None:
        states = _task_states(state.state_details.flow_run_id)
        done = set(states) >= TASKS and not {"Pending", "Running"} & set(states.values())
        return states if done else None

    return wait_for(recorded, 60, "the validation's task states")


def test_rerun_uses_cache_until_a_file_changes(
    prefect_server, broken_dir: Path, tmp_path, monkeypatch
):
    cache = tmp_path / "data-cache"
    monkeypatch.setenv("VARIANTS_CACHE_DIR", str(cache))
    config = build_config(data_dir=broken_dir, workdir=tmp_path)

    def kept() -> set[str]:
        return {p.name for p in cache.iterdir() if not p.name.startswith(".")}

    first = _validate(config)
    assert set(first.values()) == {"Completed"}
    assert len(kept()) == 2  # both data sets read and kept
    before = kept()
    second = _validate(config)
    assert second["validate-mnist"] == "Cached" and second["validate-imdb"] == "Cached"
    assert kept() == before  # mapped from what was kept: nothing read again
    with np.load(broken_dir / "mnist.npz") as npz:
        x = npz["x_test"].copy()
    x[0, 0, 0] = 255 - x[0, 0, 0]
    rewrite_npz(broken_dir / "mnist.npz", x_test=x)
    third = _validate(config)
    assert third["validate-mnist"] == "Completed" and third["validate-imdb"] == "Cached"
    assert len(kept() - before) == 1  # the changed file read again


def test_a_kept_data_set_maps_the_same_arrays_from_any_folder(data_slices: Path, tmp_path):
    """The second read of the same files (also in another folder) maps the arrays kept by
    the first: equal arrays, statistics and fingerprints, the new folder's paths; lanes
    map the same files."""
    import shutil

    from keras_variants.data.cache import read_dataset
    from keras_variants.data.mapped import map_dataset

    cache = tmp_path / "cache"
    read = read_dataset("imdb", data_slices, 10_000, cache)
    assert read.folder is None  # read from the files
    moved = Path(shutil.copytree(data_slices, tmp_path / "moved"))
    mapped = read_dataset("imdb", moved, 10_000, cache)
    assert mapped.folder is not None and Path(mapped.folder).parent == cache
    assert isinstance(mapped.train.inputs.values, np.memmap)
    for split in ("train", "test"):
        a, b = getattr(read, split), getattr(mapped, split)
        assert np.array_equal(a.labels, b.labels)
        assert np.array_equal(a.inputs.values, b.inputs.values)
        assert np.array_equal(a.inputs.offsets, b.inputs.offsets)
        for key, stat in read.raw_stats[split].items():
            assert np.array_equal(stat, mapped.raw_stats[split][key])
    assert mapped.fingerprints == read.fingerprints and mapped.vocabulary_size
    assert set(mapped.files.values()) == {str(p.resolve()) for p in moved.iterdir()
                                          if p.name in mapped.files}  # fmt: skip
    assert map_dataset(mapped, tmp_path / "lane").folder == mapped.folder  # no copy
    assert not (tmp_path / "lane").exists()


@pytest.mark.parametrize(
    ("change", "same"),
    [
        ({}, True),
        ({"files": {"imdb.npz": "b" * 64, "imdb_word_index.json": "c" * 64}}, False),
        ({"files": {"imdb.npz": "a" * 64}}, False),  # the word index is gone
        ({"code": "other code"}, False),
        ({"num_words": 5_000}, False),
        ({"name": "mnist"}, False),
    ],
)
def test_a_data_key_changes_with_each_thing_a_read_depends_on(change: dict, same: bool) -> None:
    from keras_variants.data.cache import data_key

    base = {
        "name": "imdb",
        "num_words": 10_000,
        "code": "code digest",
        "files": {"imdb.npz": "a" * 64, "imdb_word_index.json": "c" * 64},
    }
    assert (data_key(**base) == data_key(**(base | change))) is same
