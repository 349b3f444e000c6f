"""Ingestion and validation tasks."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from data_checks.checks import validate_dataset
from data_checks.runner import write_results
from keras_variants.datasets import Dataset, load_dataset, summarize
from keras_variants.errors import DataValidationError


@task(name="ingest", task_run_name="ingest-{name}", cache_policy=NO_CACHE)
def ingest(name: str, data_dir: Path | None, num_words: int) -> Dataset:
    """Read one data set; fingerprints of every file read travel with it."""
    data = load_dataset(name, data_dir, num_words)
    get_run_logger().info("%s: read %s", name, ", ".join(data.fingerprints))
    return data


@task(name="validate", task_run_name="validate-{data.name}", cache_policy=NO_CACHE)
def validate(data: Dataset, num_words: int, results_dir: Path) -> dict[str, object]:
    """Great Expectations checks; raises DataValidationError listing every failure.

    The full GX result is written to ``results_dir`` either way.
    """
    outcome = validate_dataset(data, num_words)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    path = write_results(outcome, results_dir / f"{data.name}-{stamp}.json")
    if not outcome.success:
        raise DataValidationError(outcome.failures, str(path))
    get_run_logger().info("%s: %d expectations passed", data.name, outcome.checked)
    return summarize(data) | {"expectations": outcome.checked, "results": str(path)}
