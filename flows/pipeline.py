"""The whole pipeline: ingest, validate, train and evaluate every variant, track in MLflow."""

import time
from pathlib import Path

from prefect import flow
from prefect.futures import as_completed
from prefect.logging import get_run_logger
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner
from pydantic import BaseModel

from flows.validate import ingest_and_validate
from keras_variants import runtime
from keras_variants.config.pipeline import PipelineConfig
from keras_variants.config.trials import Trial, longest_first
from keras_variants.data.datasets import Dataset
from keras_variants.errors import VariantsError
from keras_variants.interrupts import clear_stop_request, request_stop
from keras_variants.lanes import pool as lanes
from keras_variants.lanes.cluster import check_security, lost_cluster
from keras_variants.registry.gate import Decision
from keras_variants.reporting.progress import Tally
from keras_variants.tracking import runs as tracking
from keras_variants.tracking.store import is_local_store, lost_server
from tasks.registry import promote_best, write_comparison_report
from tasks.study import more_seeds
from tasks.train import (
    VariantOutcome,
    expected_times,
    prepare_tracking,
    summarize_study,
    train_variant,
)


class PipelineResult(BaseModel):
    parent_run_ids: dict[str, str]  # data set -> parent MLflow run id
    outcomes: list[VariantOutcome]  # every trial: variant x sweep point x seed
    variants: dict[str, VariantOutcome]  # the first seed's outcomes by label
    decisions: list[Decision]
    report: Path


def task_runner_for(config: PipelineConfig) -> TaskRunner:
    """Threads in this process (training in lane processes, or here with the ``threads``
    runner), or a Dask cluster (a temporary local one without address)."""
    if config.runner == "dask":
        from prefect_dask import DaskTaskRunner

        runtime.quiet_dask_client()
        if config.dask_address:
            check_security(config.dask_address)  # a certificate it lacks, before the run
            return DaskTaskRunner(address=config.dask_address)
        workers = {
            "n_workers": config.max_parallel,
            "threads_per_worker": 1,
            "processes": True,
            "preload": ["keras_variants.runtime"],  # quiet libraries in the workers too
        }
        return DaskTaskRunner(cluster_kwargs=workers)
    return ThreadPoolTaskRunner(max_workers=config.max_parallel)


def run_pipeline(config: PipelineConfig) -> "PipelineResult":
    """The pipeline flow on the task runner that ``config`` asks for."""
    return pipeline.with_options(task_runner=task_runner_for(config))(config)


@flow(name="keras-variants", task_runner=ThreadPoolTaskRunner(max_workers=2))
def pipeline(config: PipelineConfig) -> PipelineResult:
    """Validate the data, then train every selected variant (``max_parallel`` at a time).

    The decorator's two threads are only a default: :func:`run_pipeline` and the scheduled
    deployment (``variants serve``) run the flow on :func:`task_runner_for` ``config``.
    Called directly as ``pipeline(config)`` (as tests do), at most two tasks run at once.
    A Dask cluster or an MLflow server lost under the run ends it as one clear error."""
    try:
        return _pipeline(config)
    except VariantsError:  # already in the user's words (e.g. the store at start-up)
        raise
    except Exception as exc:
        lost = lost_cluster(exc, config.dask_address) if config.runner == "dask" else None
        lost = lost or lost_server(exc, config.tracking_uri)
        if lost is None:
            raise
        raise lost from exc


def _train(
    config: PipelineConfig,
    trials: list[Trial],
    datasets: dict[str, Dataset],
    parents: dict[str, str],
    lane: lanes.Lane,
    times: dict[str, float],
) -> list[VariantOutcome]:
    """Train ``trials`` side by side (``max_parallel`` at a time), a progress line each."""
    logger = get_run_logger()
    started = time.monotonic()
    futures = {
        train_variant.submit(
            config, t, datasets[t.variant.dataset], parents[t.variant.dataset], lane
        ): t.run_name
        for t in trials
    }
    expected = {t.run_name: times[t.label] for t in trials if t.label in times}
    tally = Tally(list(futures.values()), config.max_parallel, expected)
    try:
        for future in as_completed(list(futures)):
            future.wait()  # its final state, not the API's view of it
            elapsed = time.monotonic() - started
            logger.info(tally.add(futures[future], future.state.is_completed(), elapsed))
    except BaseException:  # interrupted: tell training to stop, not finish
        request_stop()
        raise
    return [f.result() for f in futures]


def _pipeline(config: PipelineConfig) -> PipelineResult:
    clear_stop_request()  # a stop asked for in an earlier run of this process is over
    with lanes.opened(config) as lane:  # lane processes start when first needed
        # Against a server, MLflow's own HTTP retries bound the wait; task retries (for a
        # locked SQLite file) would only repeat it.
        retries = 2 if is_local_store(config.tracking_uri) else 0
        store = prepare_tracking.with_options(retries=retries).submit(config)
        _, datasets = ingest_and_validate(config, lane)
        store.result()
        trials = longest_first(config.trials())
        times = expected_times(config)
        with tracking.parent_runs(config, datasets) as parents:
            outcomes: list[VariantOutcome] = []
            while trials:  # one batch; with --seeds auto, more until the claims are decided
                outcomes += _train(config, trials, datasets, parents, lane, times)
                trials = longest_first(more_seeds(config, outcomes))
            summarize_study(config, parents, outcomes)
        promotions = [
            promote_best.submit(config, datasets[name], run_id, lane)
            for name, run_id in (parents.items() if config.promote else [])
        ]  # one per data set, side by side
        decisions = [promotion.result() for promotion in promotions]
    report = write_comparison_report(config, next(iter(parents.values())))
    return PipelineResult(
        parent_run_ids=parents,
        outcomes=outcomes,
        variants={o.label: o for o in outcomes if o.seed == config.seed},
        decisions=decisions,
        report=report,
    )
