"""The data half of the pipeline: ingest every data set, then validate it."""

from prefect import flow
from prefect.futures import PrefectFuture

from keras_variants.config.pipeline import PipelineConfig
from keras_variants.config.variants import NUM_WORDS
from keras_variants.data.datasets import Dataset
from keras_variants.lanes import pool as lanes
from keras_variants.lanes.pool import Lane
from tasks.data import ingest, validate


@flow(name="validate-data")
def validate_data(config: PipelineConfig) -> dict[str, dict[str, object]]:
    """Ingest and validate the data sets the selected variants need; summaries by name."""
    with lanes.opened(config, trials=1) as lane:  # one lane encodes the samples
        summaries, _ = ingest_and_validate(config, lane)
    return summaries


def ingest_and_validate(
    config: PipelineConfig, lane: Lane
) -> tuple[dict[str, dict[str, object]], dict[str, Dataset]]:
    """Called inside a flow: every data set is read and checked before anything trains;
    ``lane`` encodes the samples that the checks on model inputs look at."""
    reads = {name: read(config, name) for name in config.datasets()}
    datasets = {name: read.result() for name, read in reads.items()}
    checks = {name: check(config, data, lane) for name, data in datasets.items()}
    return {name: check.result() for name, check in checks.items()}, datasets


def read(config: PipelineConfig, name: str) -> PrefectFuture[Dataset]:
    """Called inside a flow: data set ``name`` read (the ingest task, submitted)."""
    return ingest.submit(name, config.data_dir, NUM_WORDS)


def check(config: PipelineConfig, data: Dataset, lane: Lane) -> PrefectFuture[dict[str, object]]:
    """Called inside a flow: ``data`` validated (the validate task, submitted); its
    summary, or DataValidationError listing every failure."""
    return validate.submit(data, NUM_WORDS, config.reports_dir / "validation", lane)
