"""The deployments ``variants schedule`` serves, made from prefect.yaml's declarations
(:mod:`~keras_variants.operations.declarations`): the same flows, descriptions, concurrency
and triggers as on the work pool, with the schedule's own name, timer and parameters.

Each runs at most one flow run at a time: a run that comes due (timer or trigger) while one
is running waits for it (a deployment concurrency limit of 1 with ``ENQUEUE``). Training is
queued that way; scoring is too, and coalesces because a scoring run takes every file
waiting in the inbox, so a queued run that finds the inbox empty ends at once. A folder
trigger (data changed, files waiting) is narrowed to the folder this schedule watches. The
flows are passed in (this package sits below ``flows``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from keras_variants.operations import events
from keras_variants.operations.declarations import Declared

if TYPE_CHECKING:
    from prefect import Flow
    from prefect.deployments.runner import RunnerDeployment


def concurrency(declared: Declared) -> Any:
    """The declared limit: at most one run at a time; one that comes due meanwhile waits."""
    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy

    strategy = declared.concurrency.get("collision_strategy", "ENQUEUE")
    return ConcurrencyLimitConfig(
        limit=declared.concurrency.get("limit", 1),
        collision_strategy=ConcurrencyLimitStrategy(strategy),
    )


def triggers(declared: Declared, name: str, folder: tuple[str, Path] | None = None) -> list[Any]:
    """The declared triggers, named for deployment ``name``; with ``folder`` (its kind and
    path), a trigger on any folder of that kind matches that folder only."""
    from prefect.events import DeploymentEventTrigger

    made = []
    for spec in declared.triggers:
        spec = dict(spec)
        spec["name"] = spec["name"].replace(f"{declared.name}:", f"{name}:", 1)
        spec["description"] = " ".join(spec.get("description", "").split())
        if folder is not None and spec.get("match", {}).get("prefect.resource.id", "").endswith(
            "*"
        ):
            spec["match"] = {"prefect.resource.id": events.folder_resource(*folder)}
        made.append(DeploymentEventTrigger(**spec))
    return made


def training(
    flow: Flow,
    declared: Declared,
    name: str,
    parameters: dict[str, Any],
    cron: str | None,
    data_dir: Path | None,
) -> RunnerDeployment:
    """The training pipeline: on ``cron``, and when a data file in ``data_dir`` changes."""
    return flow.to_deployment(
        name=name,
        cron=cron,
        parameters=parameters,
        description=declared.description,
        triggers=[] if data_dir is None else triggers(declared, name, ("data", data_dir)),
        concurrency_limit=concurrency(declared),
    )


def scoring(
    flow: Flow, declared: Declared, name: str, parameters: dict[str, Any], inbox: Path
) -> RunnerDeployment:
    """Scoring of everything waiting in ``inbox``, whenever something lands there."""
    return flow.to_deployment(
        name=name,
        parameters=parameters,
        description=declared.description,
        triggers=triggers(declared, name, ("inbox", inbox)),
        concurrency_limit=concurrency(declared),
    )


def guard(
    flow: Flow, declared: Declared, parameters: dict[str, Any], description: str
) -> RunnerDeployment:
    """The guard's review of each ``champion`` move the receiver hands on (its event names
    the model and version, which become the run's parameters); one review at a time."""
    return flow.to_deployment(
        name=declared.name,
        parameters=parameters,
        description=f"{declared.description} {description}",
        triggers=triggers(declared, declared.name),
        concurrency_limit=concurrency(declared),
    )
