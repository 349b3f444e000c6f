"""The data half of the pipeline: ingest every data set, then validate it."""

from prefect import flow

from keras_variants.config.pipeline import PipelineConfig
from keras_variants.config.variants import NUM_WORDS
from keras_variants.data.datasets import Dataset
from keras_variants.lanes import pool as lanes
from keras_variants.lanes.pool import Lane
from tasks.data import ingest, validate


@flow(name="validate-data")
def validate_data(config: PipelineConfig) -> dict[str, dict[str, object]]:
    """Ingest and validate the data sets the selected variants need; summaries by name."""
    with lanes.opened(config.model_copy(update={"max_parallel": 1})) as lane:
        summaries, _ = ingest_and_validate(config, lane)
    return summaries


def ingest_and_validate(
    config: PipelineConfig, lane: Lane
) -> tuple[dict[str, dict[str, object]], dict[str, Dataset]]:
    """Called inside a flow: every data set is read and checked before anything trains;
    ``lane`` encodes the samples that the checks on model inputs look at."""
    results_dir = config.reports_dir / "validation"
    reads = {name: ingest.submit(name, config.data_dir, NUM_WORDS) for name in config.datasets()}
    datasets = {name: read.result() for name, read in reads.items()}
    checks = {
        name: validate.submit(data, NUM_WORDS, results_dir, lane) for name, data in datasets.items()
    }
    return {name: check.result() for name, check in checks.items()}, datasets
