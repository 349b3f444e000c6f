"""The guard's task (``variants schedule --guard-champion``): one call over
:func:`keras_variants.registry.guard.review`, and the event that tells ``--notify``."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from keras_variants import runtime
from keras_variants.config.pipeline import PipelineConfig
from keras_variants.data.datasets import load_dataset
from keras_variants.operations import events
from keras_variants.registry import guard
from keras_variants.registry.versions import REGISTERED_MODELS
from keras_variants.tracking.store import client_for


@task(name="review-champion", task_run_name="review-{model}-v{version}", cache_policy=NO_CACHE)
def review_champion(config: PipelineConfig, model: str, version: str) -> guard.Guarded:
    """Review ``champion`` naming ``version`` of ``model``: confirmed, reverted (and said so
    as an event, for --notify), or taken as the gate's or a rollback's own move. Models are
    scored in this process (a flow run of its own)."""
    datasets = {name: data for data, name in REGISTERED_MODELS.items()}
    runtime.import_tensorflow()
    data = load_dataset(datasets[model], config.data_dir)
    decided = guard.review(client_for(config), config, data, model, version)
    logger = get_run_logger()
    (logger.warning if decided.outcome == "reverted" else logger.info)(decided.sentence())
    if decided.outcome == "reverted":
        events.emit_reverted(model, version, decided.reason, config.tracking_uri)
    elif decided.outcome == "confirmed":
        why = f"{guard.CONFIRMED}, {guard.CHECKED}: {decided.reason}"
        events.emit_promoted(model, version, why, config.tracking_uri)
    return decided
