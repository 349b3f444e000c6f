"""The data half of the pipeline: ingest every data set, then validate it."""

from prefect import flow

from keras_variants.config import NUM_WORDS, PipelineConfig
from keras_variants.datasets import Dataset
from tasks.data import ingest, validate


@flow(name="validate-data")
def validate_data(config: PipelineConfig) -> dict[str, dict[str, object]]:
    """Ingest and validate the data sets the selected variants need; summaries by name."""
    summaries, _ = ingest_and_validate(config)
    return summaries


def ingest_and_validate(
    config: PipelineConfig,
) -> tuple[dict[str, dict[str, object]], dict[str, Dataset]]:
    """Called inside a flow: every data set is read and checked before anything trains."""
    results_dir = config.reports_dir / "validation"
    reads = {name: ingest.submit(name, config.data_dir, NUM_WORDS) for name in config.datasets()}
    datasets = {name: read.result() for name, read in reads.items()}
    checks = {
        name: validate.submit(data, NUM_WORDS, results_dir) for name, data in datasets.items()
    }
    return {name: check.result() for name, check in checks.items()}, datasets
