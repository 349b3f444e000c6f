"""Report and promotion tasks: both read what they need back from MLflow."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from keras_variants.config.pipeline import PipelineConfig
from keras_variants.data.datasets import Dataset
from keras_variants.lanes.pool import Lane
from keras_variants.operations import events
from keras_variants.registry import gate as registry
from keras_variants.registry.run_decisions import record_decision
from keras_variants.reporting.publish import draw_figures as draw_report_figures
from keras_variants.reporting.publish import publish_report
from keras_variants.reporting.report_pages import to_markdown
from keras_variants.tracking.records import load_pipeline
from keras_variants.tracking.store import client_for


@task(name="promote", task_run_name="promote-{data.name}", cache_policy=NO_CACHE)
def promote_best(
    config: PipelineConfig, data: Dataset, parent_run_id: str, lane: Lane
) -> registry.Decision:
    """Register the run's best variant on validation as challenger, then run the gate
    (models are scored in ``lane``); a promotion is also a Prefect event."""
    client = client_for(config)
    record = load_pipeline(client, parent_run_id)
    challenger = registry.select_challenger(record.variants[data.name])
    decision = registry.gate(client, config, data, challenger=challenger, call=lane.call)
    record_decision(client, parent_run_id, decision.sentence())  # what its report lists
    get_run_logger().info(decision.sentence())
    if decision.promoted:  # for --notify's automation; never fails the run
        events.emit_promoted(decision.model, decision.version, decision.reason, config.tracking_uri)
    return decision


@task(name="figures", task_run_name="figures-{parent_run_id}", cache_policy=NO_CACHE)
def draw_figures(config: PipelineConfig, parent_run_id: str) -> list[str]:
    """One data set's report figures, drawn ahead of the report (which takes them from the
    figure cache) as soon as its trials are done."""
    return draw_report_figures(client_for(config), config.reports_dir, parent_run_id)


@task(name="report", cache_policy=NO_CACHE)
def write_comparison_report(config: PipelineConfig, run_id: str | None = None) -> Path:
    """Rebuild the comparison report of a pipeline run from MLflow and publish it."""
    published = publish_report(client_for(config), config.reports_dir, run_id, rebuild=True)
    report = published.report
    create_markdown_artifact(to_markdown(report), key="comparison-report", description=report.title)
    for dataset, rows in report.tables.items():
        create_table_artifact(rows, key=f"{dataset}-variants", description=report.title)
    get_run_logger().info("report written to %s", published.page)
    return published.page
