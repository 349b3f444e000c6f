"""The deployments ``variants schedule`` serves: each runs at most one flow run at a time,
with its timer and its triggers.

A run that comes due (timer or trigger) while one is running waits for it: Prefect's
deployment concurrency limit of 1 with ``ENQUEUE``. Training is queued that way; scoring is
too, and coalesces because a scoring run takes every file waiting in the inbox, so a queued
run that finds the inbox empty ends at once. The flows are passed in (this package sits
below ``flows``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from keras_variants.operations import events

if TYPE_CHECKING:
    from prefect import Flow
    from prefect.deployments.runner import RunnerDeployment


def one_at_a_time() -> Any:
    """At most one run of a deployment at a time; one that comes due meanwhile waits."""
    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy

    return ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.ENQUEUE)


def folder_trigger(event: str, kind: str, folder: Path, name: str, description: str) -> Any:
    """A trigger that starts the deployment on ``event`` about ``folder``."""
    from prefect.events import DeploymentEventTrigger

    return DeploymentEventTrigger(
        name=name,
        description=description,
        expect={event},
        match={"prefect.resource.id": events.folder_resource(kind, folder)},
        threshold=1,
        within=0,
    )


def training(
    flow: Flow,
    name: str,
    parameters: dict[str, Any],
    cron: str | None,
    data_dir: Path | None,
    description: str,
) -> RunnerDeployment:
    """The training pipeline: on ``cron``, and when a data file in ``data_dir`` changes."""
    triggers = (
        []
        if data_dir is None
        else [
            folder_trigger(
                events.DATA_CHANGED,
                "data",
                data_dir,
                f"{name}: data changed",
                f"Run the training pipeline when a data file in {data_dir} gets a new SHA-256 "
                f"({events.DATA_CHANGED}, sent by variants schedule --on-new-data)",
            )
        ]
    )
    return flow.to_deployment(
        name=name,
        cron=cron,
        parameters=parameters,
        description=description,
        triggers=triggers,
        concurrency_limit=one_at_a_time(),
    )


def guard(flow: Flow, name: str, parameters: dict[str, Any], description: str) -> RunnerDeployment:
    """The guard's review of each ``champion`` move the receiver hands on (its event names
    the model and version, which become the run's parameters); one review at a time."""

    return flow.to_deployment(
        name=name,
        parameters=parameters,
        description=description,
        triggers=[guard_trigger(name)],
        concurrency_limit=one_at_a_time(),
    )


def guard_trigger(name: str) -> Any:
    """Run the guard on :data:`~keras_variants.operations.events.CHAMPION_MOVED`, with the
    event's model and version as the run's parameters."""
    from prefect.events import DeploymentEventTrigger

    return DeploymentEventTrigger(
        name=f"{name}: champion moved",
        description=(
            f"Review a 'champion' set in the MLflow registry ({events.CHAMPION_MOVED}, sent by "
            "the guard's receiver when MLflow's webhook tells it)"
        ),
        expect={events.CHAMPION_MOVED},
        parameters=GUARD_PARAMETERS,
        threshold=1,
        within=0,
    )


# The run's parameters from the event's payload (Prefect renders them on the server).
GUARD_PARAMETERS = {
    "model": "{{ event.payload.model }}",
    "version": "{{ event.payload.version }}",
}


def scoring(
    flow: Flow, name: str, parameters: dict[str, Any], inbox: Path, description: str
) -> RunnerDeployment:
    """Scoring of everything waiting in ``inbox``, whenever something lands there."""
    trigger = folder_trigger(
        events.INBOX_WAITING,
        "inbox",
        inbox,
        f"{name}: files waiting",
        f"Score what waits in {inbox} when files land there ({events.INBOX_WAITING}, sent by "
        "variants schedule --score-inbox); a run that comes due while one runs waits for it",
    )
    return flow.to_deployment(
        name=name,
        parameters=parameters,
        description=description,
        triggers=[trigger],
        concurrency_limit=one_at_a_time(),
    )
