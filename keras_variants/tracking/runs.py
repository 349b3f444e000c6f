"""MLflow at one edge: parent and child runs, per-epoch curves, results, data inputs and
the served model of each variant.

Everything goes through an explicit :class:`MlflowClient` and run id: nothing relies on
MLflow's process-wide tracking URI or on a thread's active run, so worker threads (and
Dask workers) log safely side by side. Runs are always ended: FINISHED on success, KILLED
on interruption, FAILED otherwise, so no run of this tool stays RUNNING.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from mlflow.entities import (
    LoggedModelOutput,
    Metric,
    Param,
    Run,
    RunTag,
)
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from keras_variants.config.pipeline import PipelineConfig
from keras_variants.config.trials import Trial
from keras_variants.config.variants import HISTORY_KEYS
from keras_variants.data.datasets import Dataset, split_rows
from keras_variants.lanes.jobs import TrainedVariant
from keras_variants.tracking.datasets import dataset_input, test_dataset, training_inputs
from keras_variants.tracking.logged_models import artifact_writes, log_served_model
from keras_variants.tracking.store import (
    SWEPT_TAG,
    client_for,
    experiment_id,
    git_commit,
    owner_tags,
    server_unreachable,
)
from keras_variants.tracking.trial_key import REUSED_FROM_TAG, TRIAL_KEY_TAG
from keras_variants.tracking.ui_links import TOOL_TAG

TEST_CONTEXT = "testing"  # the dataset input that test metrics are linked to


def _end_status(exc: BaseException) -> str:
    """KILLED for interruptions (Ctrl-C, SIGTERM, exit: anything that is not an Exception,
    like Prefect's TerminationSignal), FAILED for errors."""
    return "FAILED" if isinstance(exc, Exception) else "KILLED"


def _params(values: dict[str, object]) -> list[Param]:
    return [Param(key, str(value)) for key, value in values.items()]


def new_pipeline_id() -> str:
    """The id that ties one pipeline run's parent runs (one per data set) together."""
    return uuid.uuid4().hex[:12]


@contextmanager
def parent_run(config: PipelineConfig, pipeline_id: str, name: str, data: Dataset) -> Iterator[str]:
    """The parent run of data set ``name`` in the pipeline run ``pipeline_id``, in the data
    set's experiment; yields its run id. Ended FINISHED when the block ends, FAILED or
    KILLED (with the children it left running) when it raises."""
    client = client_for(config)
    run = client.create_run(
        experiment_id(config, name),
        run_name=f"pipeline-{pipeline_id}",
        tags=_common_tags(config, pipeline_id, name) | {"role": "pipeline"},
    )
    runs = {name: run.info.run_id}
    try:
        client.log_batch(
            run.info.run_id,
            params=_params(
                {
                    "profile": config.profile.name,
                    "protocol": config.protocol,
                    "seeds": ",".join(map(str, config.seeds)),
                    **(config.seed_plan.params() if config.seed_plan else {}),
                    "variants": ",".join(v.name for v in config.selected()),
                    **{
                        f"sweep.{variant}.{key}": ",".join(map(str, values))
                        for variant, grid in config.sweeps.items()
                        for key, values in grid.items()
                    },
                    **{f"data.{f}.sha256": d for f, d in data.fingerprints.items()},
                }
            ),
        )
        yield run.info.run_id
    except BaseException as exc:
        if server_unreachable(exc):  # the next run's start-up sweep ends them
            raise
        if isinstance(exc, Exception):  # an interruption's trials end themselves KILLED
            _end_orphaned_children(client, runs, "the pipeline run failed")
        client.set_terminated(run.info.run_id, _end_status(exc))
        raise
    _end_orphaned_children(client, runs, "its Dask worker died; the trial ran again")
    client.set_terminated(run.info.run_id, "FINISHED")


def _end_orphaned_children(client: MlflowClient, parents: dict[str, str], reason: str) -> None:
    """End as FAILED the child runs of ``parents`` still RUNNING once every trial is over:
    attempts whose process died under them (a lost Dask worker, whose trial Dask ran again
    elsewhere) or that a lost cluster left behind. Tagged like the start-up sweep's."""
    experiments = sorted({client.get_run(run_id).info.experiment_id for run_id in parents.values()})
    running = client.search_runs(experiments, "attributes.status = 'RUNNING'") if parents else []
    for run in running:
        if run.data.tags.get(MLFLOW_PARENT_RUN_ID) in parents.values():
            client.set_tag(run.info.run_id, SWEPT_TAG, reason)
            client.set_terminated(run.info.run_id, "FAILED")


def log_study_summary(client: MlflowClient, parent_run_id: str, summary: dict[str, float]) -> None:
    """Aggregates across seeds (``study.summary_metrics``) on a pipeline's parent run."""
    stamp = int(time.time() * 1000)
    metrics = [Metric(key, value, stamp, 0) for key, value in summary.items()]
    for start in range(0, len(metrics), 1000):  # MLflow takes at most 1,000 per batch
        client.log_batch(parent_run_id, metrics=metrics[start : start + 1000])


def _common_tags(config: PipelineConfig, pipeline_id: str, dataset: str) -> dict[str, str]:
    return {
        TOOL_TAG: pipeline_id,
        "dataset": dataset,
        "profile": config.profile.name,
        "protocol": config.protocol,
        "git_commit": git_commit(),
        **owner_tags(),
    }


@contextmanager
def variant_run(client: MlflowClient, trial: Trial, parent_run_id: str, key: str) -> Iterator[str]:
    """A child run of ``parent_run_id`` for one trial with key ``key`` (reuse.trial_key);
    yields its run id."""
    parent = client.get_run(parent_run_id)
    inherited = {k: v for k, v in parent.data.tags.items() if not k.startswith("mlflow.")}
    run = client.create_run(
        parent.info.experiment_id,
        run_name=trial.run_name,
        tags=inherited
        | {
            "role": "variant",
            "variant": trial.variant.name,
            "label": trial.label,
            TRIAL_KEY_TAG: key,
            MLFLOW_PARENT_RUN_ID: parent_run_id,
        },
    )
    run_id = run.info.run_id
    try:
        yield run_id
    except BaseException as exc:
        if not server_unreachable(exc):  # else the next run's start-up sweep ends it
            client.set_terminated(run_id, _end_status(exc))
        raise
    client.set_terminated(run_id, "FINISHED")


def find_reusable(client: MlflowClient, parent_run_id: str, key: str) -> Run | None:
    """The latest finished run of this trial key in the parent's experiment that trained
    (not itself a reuse) and logged its model, if any."""
    experiment = client.get_run(parent_run_id).info.experiment_id
    candidates = client.search_runs(
        [experiment],
        f"tags.`{TRIAL_KEY_TAG}` = '{key}' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=20,
    )
    for run in candidates:
        if REUSED_FROM_TAG not in run.data.tags and run.outputs and run.outputs.model_outputs:
            return run
    return None


def reuse(client: MlflowClient, run_id: str, earlier: Run) -> dict[str, list[float]]:
    """Make ``run_id`` stand for ``earlier``, which trained with the same key: its params,
    metrics, curves and tags, a tag pointing to it, and its logged model as an output.
    Returns the curves (``"val/loss"`` -> one value per epoch)."""
    curves = {
        key: sorted(client.get_metric_history(earlier.info.run_id, key), key=lambda m: m.step)
        for key in HISTORY_KEYS.values()
    }
    stamp = int(time.time() * 1000)
    metrics = [
        Metric(m.key, m.value, stamp, m.step) for history in curves.values() for m in history
    ]
    metrics += [Metric(k, v, stamp, 0) for k, v in earlier.data.metrics.items() if k not in curves]
    tags = [RunTag(k, v) for k, v in earlier.data.tags.items() if k.startswith("data.")]
    tags.append(RunTag(REUSED_FROM_TAG, earlier.info.run_id))
    client.log_batch(run_id, params=_params(earlier.data.params), tags=tags)
    for start in range(0, len(metrics), 1000):
        client.log_batch(run_id, metrics=metrics[start : start + 1000])
    model_id = earlier.outputs.model_outputs[0].model_id
    client.log_outputs(run_id, [LoggedModelOutput(model_id, step=0)])
    return {key: [m.value for m in history] for key, history in curves.items()}


def log_epoch(client: MlflowClient, run_id: str, epoch: int, logs: dict[str, float]) -> None:
    """``train/*`` and ``val/*`` of one epoch (1-based), so curves grow live in the UI."""
    stamp = int(time.time() * 1000)
    keys = [(HISTORY_KEYS[k], v) for k, v in logs.items() if k in HISTORY_KEYS]
    metrics = [Metric(key, float(value), stamp, epoch) for key, value in keys]
    client.log_batch(run_id, metrics=metrics)


def log_variant_result(
    client: MlflowClient,
    run_id: str,
    config: PipelineConfig,
    trial: Trial,
    data: Dataset,
    result: TrainedVariant,
) -> str:
    """Params, data inputs, confusion matrix, the served model (saved by the lane in
    ``result.model_dir``) and the test metrics of one variant run, linked to the logged model
    and to the test rows as a dataset input; returns the logged model's id."""
    variant = trial.variant
    client.log_batch(
        run_id,
        params=_params(
            {
                "architecture": variant.architecture,
                "hidden_units": list(variant.hidden_units),
                "conv_filters": list(variant.conv_filters),
                "input_shape": list(variant.input_shape),
                "optimizer": variant.optimizer,
                "learning_rate": variant.learning_rate,
                "epochs": result.epochs,
                "batch_size": variant.batch_size,
                "l2": variant.l2,
                "dropout": variant.dropout,
                "mc_samples": variant.mc_samples,
                "precision": result.precision,
                "seed": trial.seed,
                "profile": config.profile.name,
                "protocol": config.protocol,
                "parameter_count": result.parameter_count,
                **{f"{split}_rows": rows for split, rows in result.rows.items()},
            }
        ),
        tags=[RunTag(f"data.{f}.sha256", d) for f, d in data.fingerprints.items()],
    )
    test = test_dataset(data, split_rows(data, config.profile, trial.seed)["test"])
    inputs = [
        *training_inputs(data),
        dataset_input(test, TEST_CONTEXT),
    ]
    _tolerating_a_concurrent_insert(client.log_inputs, run_id, inputs)
    with artifact_writes(client, run_id):
        client.log_dict(
            run_id,
            {
                "labels": list(range(len(result.confusion_matrix))),
                "matrix": result.confusion_matrix.tolist(),
            },
            "confusion_matrix.json",
        )
        if result.uncertainty:  # reliability diagrams and far-from-data scores
            client.log_dict(run_id, result.uncertainty, "uncertainty.json")
        model_id = log_served_model(client, run_id, trial, Path(result.model_dir))
    validation_loss = result.history["val/loss"]
    best = result.validation_loss_min_epoch - 1
    stamp = int(time.time() * 1000)
    summary = result.test_metrics | {
        "validation_loss_min_epoch": result.validation_loss_min_epoch,
        "val/loss_min": validation_loss[best],
        "val/accuracy_at_loss_min": result.history["val/accuracy"][best],
        "training_seconds": result.training_seconds,
    }
    # Logged with the model's id, so the UI's model pages show them too; test metrics also
    # name the test rows they were measured on ("Datasets used").
    metrics = []
    for key, value in summary.items():
        on = (test.name, test.digest) if key.startswith("test/") else (None, None)
        metrics.append(Metric(key, float(value), stamp, 0, model_id, *on))
    client.log_batch(run_id, metrics=metrics)
    return model_id


def _tolerating_a_concurrent_insert(write: Callable[..., None], *args, **kwargs) -> None:
    """Call ``write`` again if another process inserted the same row (say, a data set that
    both runs log) between MLflow's check for it and its own insert."""
    attempts = 3
    for attempt in range(attempts):
        try:
            return write(*args, **kwargs)
        except MlflowException as exc:
            if "UNIQUE constraint" not in str(exc) or attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1))
