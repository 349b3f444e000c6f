"""A rerun on unchanged data skips ingestion and validation; a changed file does not."""

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

pytestmark = pytest.mark.slow


def _task_states(flow_run_id) -> dict[str, str]:
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
            sort=TaskRunSort.EXPECTED_START_TIME_ASC,
            limit=50,
        )
    return {run.name: run.state.name for run in runs}


def _validate(config) -> dict[str, str]:
    state = validate_data(config, return_state=True)
    assert state.is_completed()
    return _task_states(state.state_details.flow_run_id)


def test_rerun_uses_cache_until_a_file_changes(prefect_server, broken_dir: Path, tmp_path):
    config = build_config(data_dir=broken_dir, workdir=tmp_path)
    first = _validate(config)
    assert set(first.values()) == {"Completed"}
    second = _validate(config)
    assert second == {name: "Cached" for name in first}
    with np.load(broken_dir / "mnist.npz") as npz:
        x = npz["x_test"].copy()
    x[0, 0, 0] = 255 - x[0, 0, 0]
    rewrite_npz(broken_dir / "mnist.npz", x_test=x)
    third = _validate(config)
    assert third["ingest-mnist"] == "Completed" and third["validate-mnist"] == "Completed"
    assert third["ingest-imdb"] == "Cached" and third["validate-imdb"] == "Cached"
