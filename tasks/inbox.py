"""Scoring-inbox tasks (``variants schedule --score-inbox``): each one call over
:mod:`keras_variants.operations.inbox` or :mod:`keras_variants.operations.events`."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from keras_variants.config.pipeline import PipelineConfig
from keras_variants.operations import events, inbox
from keras_variants.scoring.request import ScoringResult
from keras_variants.tracking.ui_links import mlflow_ui_for, run_page


@task(name="take-waiting", cache_policy=NO_CACHE)
def take_waiting(folder: Path) -> list[Path]:
    """Every settled file or folder in the inbox, moved aside for this run."""
    taken = inbox.take_waiting(folder)
    get_run_logger().info("%d waiting: %s", len(taken), ", ".join(p.name for p in taken) or "none")
    return taken


@task(name="finish", cache_policy=NO_CACHE)
def finish(folder: Path, entry: Path, result: ScoringResult) -> Path:
    """A scored entry to ``done/``."""
    get_run_logger().info("%s: %s (files in %s)", entry.name, result.line, result.folder)
    return inbox.finish(folder, entry)


@task(name="fail", cache_policy=NO_CACHE)
def fail(folder: Path, entry: Path, reason: str) -> Path:
    """A refused entry to ``failed/`` with its reason beside it."""
    get_run_logger().warning("%s: not scored: %s", entry.name, reason)
    return inbox.fail(folder, entry, reason)


@task(name="announce-drift", cache_policy=NO_CACHE)
def announce_drift(config: PipelineConfig, entry: Path, result: ScoringResult) -> None:
    """A ``drift`` event (for ``--notify``) when the scoring found drift."""
    model = result.summary["model"]
    page = run_page(mlflow_ui_for(config.tracking_uri), result.experiment_id, result.run_id)
    reason = f"{entry.name}: {result.line}"
    events.emit_drift(model["name"], model["version"], reason, page)
