"""Review a ``champion`` set in the MLflow registry (``variants schedule --guard-champion``):
started by the receiver's event, one review at a time."""

from prefect import flow

from keras_variants.config.pipeline import PipelineConfig
from keras_variants.registry.guard import Guarded
from tasks.guard import review_champion


@flow(name="guard-champion")
def guard_champion(config: PipelineConfig, model: str, version: str) -> Guarded:
    """Whether ``version`` of ``model``, now ``champion``, stands: confirmed or reverted when
    it was set by hand, recorded when the gate or a rollback set it."""
    return review_champion(config, model, version)
