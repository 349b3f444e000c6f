"""Rebuild the comparison report of any past pipeline run from MLflow."""

from pathlib import Path

from prefect import flow

from keras_variants.config.pipeline import PipelineConfig
from tasks.registry import write_comparison_report


@flow(name="comparison-report")
def comparison_report(config: PipelineConfig, run_id: str | None = None) -> Path:
    """The report of the pipeline run ``run_id`` belongs to (default: the latest)."""
    return write_comparison_report(config, run_id)
