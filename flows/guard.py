"""Review a ``champion`` set in the MLflow registry (``variants schedule --guard-champion``,
or prefect.yaml's ``guard-champion`` on the work pool): started by the receiver's event, one
review at a time, with the run's options as plain parameters."""

from __future__ import annotations

from typing import Any

from prefect import flow

from keras_variants.operations.declarations import run_config
from keras_variants.registry.guard import Guarded
from tasks.guard import review_champion


@flow(name="guard-champion")
def guard_champion(
    model: str,
    version: str,
    profile: str = "full",
    variants: list[str] | None = None,
    seeds: list[int] | None = None,
    study: str | None = None,
    sweeps: dict[str, dict[str, list[Any]]] | None = None,
    protocol: str = "lecture",
    data_dir: str | None = None,
    tracking_uri: str | None = None,
    workdir: str | None = None,
    settings: dict[str, Any] | None = None,
) -> Guarded:
    """Whether ``version`` of ``model``, now ``champion``, stands: confirmed or reverted when
    it was set by hand, recorded when the gate or a rollback set it. The test inputs are the
    profile's, for the first seed, as the gate's."""
    config = run_config(profile, variants, seeds, study, sweeps, protocol, data_dir,
                        tracking_uri, workdir, settings)  # fmt: skip
    return review_champion(config, model, version)
