"""Ingestion and validation tasks."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.context import TaskRunContext
from prefect.logging import get_run_logger

from keras_variants.code_digest import code_digest
from keras_variants.data.cache import read_dataset
from keras_variants.data.datasets import Dataset, summarize
from keras_variants.errors import DataValidationError
from keras_variants.lanes.pool import Lane


def _validate_key(context: TaskRunContext, parameters: dict[str, Any]) -> str:
    """The data's fingerprints and the suites' code (read, not imported: the checks import
    Great Expectations, which a cached run never needs)."""
    data: Dataset = parameters["data"]
    fingerprints = ",".join(f"{k}={v}" for k, v in sorted(data.fingerprints.items()))
    code = code_digest("data_checks.checks")
    return hashlib.sha256(f"{fingerprints}:{parameters['num_words']}:{code}".encode()).hexdigest()


CACHE_DAYS = timedelta(days=30)


@task(name="ingest", task_run_name="ingest-{name}", cache_policy=NO_CACHE)
def ingest(name: str, data_dir: Path | None, num_words: int) -> Dataset:
    """Read one data set (mapped from the data cache when these files were read before);
    fingerprints of every file read travel with it."""
    data = read_dataset(name, data_dir, num_words)
    get_run_logger().info("%s: read %s", name, ", ".join(data.fingerprints))
    return data


@task(
    name="validate",
    task_run_name="validate-{data.name}",
    cache_key_fn=_validate_key,
    cache_expiration=CACHE_DAYS,
    persist_result=True,
)
def validate(data: Dataset, num_words: int, results_dir: Path, lane: Lane) -> dict[str, object]:
    """Great Expectations checks; raises DataValidationError listing every failure.

    The full GX result is written to ``results_dir`` either way. ``lane`` encodes samples.
    """
    lane.warm()  # its TensorFlow import beside Great Expectations' and the raw checks
    from data_checks.checks import validate_dataset
    from data_checks.runner import write_results

    outcome = validate_dataset(data, num_words, lane.call)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    path = write_results(outcome, results_dir / f"{data.name}-{stamp}.json")
    if not outcome.success:
        raise DataValidationError(outcome.failures, str(path))
    get_run_logger().info("%s: %d expectations passed", data.name, outcome.checked)
    return summarize(data) | {"expectations": outcome.checked, "results": str(path)}
