"""Train-and-evaluate task: one trial (a variant at a sweep point, with a seed), one MLflow
child run."""

from __future__ import annotations

import tempfile
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger
from pydantic import BaseModel

from keras_variants.config.pipeline import PipelineConfig
from keras_variants.config.trials import Trial
from keras_variants.data.datasets import Dataset, split_rows
from keras_variants.lanes.jobs import TrainJob
from keras_variants.lanes.pool import Lane
from keras_variants.model.precision import resolve_precision
from keras_variants.registry.served_accuracy import gate_inputs
from keras_variants.studies.study import aggregate, run_measures, summary_metrics
from keras_variants.tracking import runs as tracking
from keras_variants.tracking import store
from keras_variants.tracking.records import trial_seconds
from keras_variants.tracking.system_metrics import system_metrics
from keras_variants.tracking.trial_key import trial_key_for


class VariantOutcome(BaseModel):
    """What a flow returns about one trained variant (one trial of a study)."""

    variant: str
    label: str  # the variant plus its sweep values, e.g. "imdb_dropout dropout:0.2"
    seed: int
    dataset: str
    run_id: str
    validation_accuracy: float  # of the last epoch: what selects the challenger
    test_metrics: dict[str, float]
    validation_loss_min_epoch: int
    training_seconds: float
    measures: dict[str, float]  # what a study compares across seeds (study.run_measures)


@task(name="prepare-tracking", retries=2, retry_delay_seconds=2, cache_policy=NO_CACHE)
def prepare_tracking(config: PipelineConfig) -> list[str]:
    """Check the MLflow store answers (bounded retries), then end runs left by crashes."""
    swept = store.open_store(config)
    if swept:
        get_run_logger().warning("marked %d stale run(s) FAILED: %s", len(swept), swept)
    return swept


@task(name="expected-times", cache_policy=NO_CACHE)
def expected_times(config: PipelineConfig) -> dict[str, float]:
    """How long each trial (by label) took in this store's earlier runs of the profile:
    what the progress line's estimate is made of."""
    datasets = sorted({t.variant.dataset for t in config.trials()})
    return trial_seconds(store.client_for(config), datasets, config.profile.name)


@task(name="train-and-evaluate", task_run_name="train-{trial.run_name}", cache_policy=NO_CACHE)
def train_variant(
    config: PipelineConfig, trial: Trial, data: Dataset, parent_run_id: str, lane: Lane
) -> VariantOutcome:
    """Train ``trial``'s variant on its data set's splits for its seed in ``lane``, score it
    on test, log it all to MLflow; or reuse an earlier run of the same trial key."""
    logger = get_run_logger()
    variant, seed = trial.variant, trial.seed
    client = store.client_for(config)
    precision = resolve_precision(config.precision, variant.architecture)
    key = trial_key_for(config, trial, data.fingerprints, precision)
    earlier = None if config.force else tracking.find_reusable(client, parent_run_id, key)
    if earlier is not None:
        with tracking.variant_run(client, trial, parent_run_id, key) as run_id:
            curves = tracking.reuse(client, run_id, earlier)
        logger.info("%s: unchanged since run %s, reused", trial.run_name, earlier.info.run_id)
        metrics = earlier.data.metrics
        return _outcome(trial, run_id, metrics, curves["val/loss"], curves["val/accuracy"])
    test_rows = split_rows(data, config.profile, seed)["test"]
    with (
        tracking.variant_run(client, trial, parent_run_id, key) as run_id,
        tempfile.TemporaryDirectory(prefix="keras-variants-model-") as folder,
    ):

        def report(epoch: int, epochs: int, logs: dict[str, float], seconds: float) -> None:
            tracking.log_epoch(client, run_id, epoch, logs)
            logger.info(
                "%s epoch %d/%d: loss %.4f acc %.4f | val_loss %.4f val_acc %.4f (%.1f s)",
                trial.run_name, epoch, epochs, logs.get("loss", float("nan")),
                logs.get("accuracy", float("nan")), logs.get("val_loss", float("nan")),
                logs.get("val_accuracy", float("nan")), seconds,
            )  # fmt: skip

        job = TrainJob(
            variant=variant,
            seed=seed,
            profile=config.profile,
            data=lane.share(data),
            # A test example as a user sends it: a review text or a PNG digit.
            input_example=gate_inputs(data, test_rows[:1]).inputs[0],
            model_dir=str(Path(folder) / "model"),
            steps_per_execution=config.steps_per_execution,
            precision=precision,
        )
        with system_metrics(config.tracking_uri, run_id):  # what the trial cost the host
            result = lane.train(job, report)
        tracking.log_variant_result(client, run_id, config, trial, data, result)
    logger.info(
        "%s: test %s, lowest val_loss at epoch %d, %.1f s",
        trial.run_name,
        ", ".join(f"{k.split('/')[1]} {v:.4f}" for k, v in result.test_metrics.items()),
        result.validation_loss_min_epoch,
        result.training_seconds,
    )
    metrics = result.test_metrics | {
        "validation_loss_min_epoch": result.validation_loss_min_epoch,
        "training_seconds": result.training_seconds,
    }
    return _outcome(
        trial, run_id, metrics, result.history["val/loss"], result.history["val/accuracy"]
    )


def _outcome(
    trial: Trial,
    run_id: str,
    metrics: dict[str, float],
    validation_loss: list[float],
    validation_accuracy: list[float],
) -> VariantOutcome:
    return VariantOutcome(
        variant=trial.variant.name,
        label=trial.label,
        seed=trial.seed,
        dataset=trial.variant.dataset,
        run_id=run_id,
        validation_accuracy=validation_accuracy[-1],
        test_metrics={k: v for k, v in metrics.items() if k.startswith("test/")},
        validation_loss_min_epoch=int(metrics["validation_loss_min_epoch"]),
        training_seconds=metrics["training_seconds"],
        measures=run_measures(metrics, validation_loss),
    )


@task(name="summarize-study", cache_policy=NO_CACHE)
def summarize_study(
    config: PipelineConfig, parents: dict[str, str], outcomes: list[VariantOutcome]
) -> dict[str, float]:
    """Aggregates across seeds per variant (and sweep point) on each data set's parent run."""
    logged: dict[str, float] = {}
    client = store.client_for(config)
    for dataset, parent_run_id in parents.items():
        runs = [(o.label, o.measures) for o in outcomes if o.dataset == dataset]
        metrics = summary_metrics(aggregate(runs))
        tracking.log_study_summary(client, parent_run_id, metrics)
        logged |= metrics
    return logged
