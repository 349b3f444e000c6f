"""The whole pipeline: ingest, validate, train and evaluate every variant, track in MLflow;
each data set flows on its own (:mod:`keras_variants.lanes.turns`)."""

import time
from dataclasses import dataclass
from pathlib import Path

from prefect import flow
from prefect.futures import PrefectFuture
from prefect.logging import get_run_logger
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner
from pydantic import BaseModel

from flows.validate import check, read
from keras_variants import runtime
from keras_variants.config.pipeline import PipelineConfig
from keras_variants.config.trials import Trial, longest_first
from keras_variants.config.variants import DATASETS
from keras_variants.data.datasets import Dataset
from keras_variants.errors import VariantsError, what_was_registered
from keras_variants.interrupts import clear_stop_request, request_stop
from keras_variants.lanes import pool as lanes
from keras_variants.lanes.cluster import check_security, lost_cluster
from keras_variants.lanes.turns import Strands, Turns, in_turns, task_threads
from keras_variants.registry.gate import Decision
from keras_variants.reporting.progress import Tally
from keras_variants.tracking import runs as tracking
from keras_variants.tracking.store import is_local_store, lost_server
from tasks.registry import draw_figures, promote_best, write_comparison_report
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
    return ThreadPoolTaskRunner(max_workers=task_threads(config.max_parallel, len(DATASETS)))


def run_pipeline(config: PipelineConfig) -> "PipelineResult":
    """The pipeline flow on the task runner that ``config`` asks for."""
    return pipeline.with_options(task_runner=task_runner_for(config))(config)


@flow(name="keras-variants", task_runner=ThreadPoolTaskRunner(max_workers=task_threads(2, 2)))
def pipeline(config: PipelineConfig) -> PipelineResult:
    """Each data set on its own: read, checked, its variants trained (``max_parallel`` at a
    time across data sets), then its gate; only the report waits for all of them. The data
    set of the longest trial (the CNN) is checked and trained first; the next is checked
    while it trains.

    The decorator's task runner is only a default: :func:`run_pipeline` and the scheduled
    deployment (``variants serve``) run the flow on :func:`task_runner_for` ``config``.
    A Dask cluster or an MLflow server lost under the run ends it as one clear error; a
    data set that fails its checks, or a trial that fails, stops the others' training."""
    gated: list[str] = []  # data sets whose gate ran: what a failure must not deny
    try:
        return _pipeline(config, gated)
    except VariantsError:  # already in the user's words (e.g. the store at start-up)
        raise
    except Exception as exc:
        done = tuple(gated)
        lost = lost_cluster(exc, config.dask_address, done) if config.runner == "dask" else None
        lost = lost or lost_server(exc, config.tracking_uri, done)
        if lost is None:
            raise
        raise lost from exc
    except BaseException as exc:  # interrupted: the command says what was registered
        exc.add_note(what_was_registered(tuple(gated)))
        raise


@dataclass(frozen=True)
class _Shared:
    """What the data sets' strands share: the lanes, turns for them, the progress count."""

    lane: lanes.Lane
    turns: Turns
    tally: Tally
    times: dict[str, float]  # trial label -> seconds it took here before
    started: float  # time.monotonic() as training could start
    gated: list[str]  # data sets whose gate ran


def _shared(
    config: PipelineConfig, trials: list[Trial], lane: lanes.Lane, gated: list[str]
) -> _Shared:
    """What the strands share, once the store answers (earlier runs' times are read there)."""
    times = expected_times(config)
    expected = {t.run_name: times[t.label] for t in trials if t.label in times}
    tally = Tally([t.run_name for t in trials], config.max_parallel, expected)
    turns = Turns(None if config.runner == "dask" else config.max_parallel)
    return _Shared(lane, turns, tally, times, time.monotonic(), gated)


def _train(
    config: PipelineConfig, trials: list[Trial], data: Dataset, parent: str, shared: _Shared
) -> list[VariantOutcome]:
    """Train ``trials`` of one data set as lanes come free (in their order), a progress
    line as each ends."""
    logger = get_run_logger()
    ended: dict[str, PrefectFuture[VariantOutcome]] = {}

    def submit(trial: Trial) -> PrefectFuture[VariantOutcome]:
        return train_variant.submit(config, trial, data, parent, shared.lane)

    try:
        for trial, future in in_turns(trials, submit, shared.turns):
            future.wait()  # its final state, not the API's view of it
            elapsed = time.monotonic() - shared.started
            line = shared.tally.add(trial.run_name, future.state.is_completed(), elapsed)
            logger.info(line)
            ended[trial.run_name] = future
    except BaseException:  # interrupted: tell training to stop, not finish
        request_stop()
        raise
    return [ended[t.run_name].result() for t in trials]  # a failed trial's error


def _dataset(
    config: PipelineConfig, data: Dataset, trials: list[Trial], pipeline_id: str, shared: _Shared
) -> tuple[str, list[VariantOutcome], Decision | None]:
    """One data set's part of the run, once its data is checked: its trials (and, with
    --seeds auto, more until its claims are decided), then its gate. Its parent run id,
    its outcomes and the gate's decision."""
    outcomes: list[VariantOutcome] = []
    with tracking.parent_run(config, pipeline_id, data.name, data) as parent:
        while trials:
            outcomes += _train(config, trials, data, parent, shared)
            trials = longest_first(more_seeds(config, outcomes))
            shared.tally.extend(
                [t.run_name for t in trials],
                {t.run_name: shared.times[t.label] for t in trials if t.label in shared.times},
            )
        summarize_study(config, {data.name: parent}, outcomes)
    figures = draw_figures.submit(config, parent)  # the report's, drawn beside the gate
    decision = None
    if config.promote:
        decision = promote_best.submit(config, data, parent, shared.lane).result()
        shared.gated.append(data.name)
    figures.wait()
    return parent, outcomes, decision


def _pipeline(config: PipelineConfig, gated: list[str]) -> PipelineResult:
    clear_stop_request()  # a stop asked for in an earlier run of this process is over
    trials = longest_first(config.trials())
    # The data set of the longest trial (the CNN) first: checked first, trained first.
    order = list(dict.fromkeys(t.variant.dataset for t in trials))
    at_once = None if config.seed_plan else len(trials)  # --seeds auto adds trials later
    with lanes.opened(config, at_once) as lane:  # lane processes start when first needed
        if lanes.reuses_nothing(config):  # they will train: their imports beside the start
            lane.warm()
        # Against a server, MLflow's own HTTP retries bound the wait; task retries (for a
        # locked SQLite file) would only repeat it.
        retries = 2 if is_local_store(config.tracking_uri) else 0
        store = prepare_tracking.with_options(retries=retries).submit(config)
        reads = {name: read(config, name) for name in order}
        pipeline_id = tracking.new_pipeline_id()
        shared: _Shared | None = None
        with Strands() as strands:
            for name in order:  # each checked while the ones before it train
                data = reads[name].result()
                check(config, data, lane).result()
                if strands.failed:  # join raises why
                    break
                if shared is None:  # the store answers: training can start
                    store.result()
                    shared = _shared(config, trials, lane, gated)
                mine = [t for t in trials if t.variant.dataset == name]
                strands.start(name, _dataset, config, data, mine, pipeline_id, shared)
            ended = strands.join()
    parents = {name: ended[name][0] for name in config.datasets()}
    outcomes = [o for name in config.datasets() for o in ended[name][1]]
    decisions = [ended[name][2] for name in config.datasets() if ended[name][2] is not None]
    report = write_comparison_report(config, next(iter(parents.values())))
    return PipelineResult(
        parent_run_ids=parents,
        outcomes=outcomes,
        variants={o.label: o for o in outcomes if o.seed == config.seed},
        decisions=decisions,
        report=report,
    )
