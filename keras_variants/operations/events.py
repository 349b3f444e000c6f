"""The project's own Prefect events, one name each, and the resource each one is about.

Emitted from flows and tasks (promoted, drift, champion reverted), from ``variants
schedule``'s watchers (data changed, inbox waiting) or from the guard's receiver (champion
moved, as MLflow's webhook told it); automations and deployment triggers match on these
names. Emitting never fails a run: Prefect drops an event it cannot send.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from keras_variants.tracking.ui_links import mlflow_ui_for, version_page

PREFIX = "keras-variants"
DATA_CHANGED = f"{PREFIX}.data.changed"
INBOX_WAITING = f"{PREFIX}.inbox.waiting"
MODEL_PROMOTED = f"{PREFIX}.model.promoted"
DRIFT_FOUND = f"{PREFIX}.scoring.drift"
CHAMPION_MOVED = f"{PREFIX}.registry.champion-moved"  # by anyone: the guard reviews it
CHAMPION_REVERTED = f"{PREFIX}.model.champion-reverted"  # set by hand, did not stand


def folder_resource(kind: str, folder: Path) -> str:
    """The resource id of a watched folder: its kind and a short hash of its absolute path
    (stable across restarts, so a trigger keeps matching)."""
    digest = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:16]
    return f"{PREFIX}.{kind}.{digest}"


def model_resource(model: str, version: str) -> dict[str, str]:
    return {
        "prefect.resource.id": f"{PREFIX}.model.{model}.{version}",
        "prefect.resource.name": f"{model} v{version}",
    }


def emit(event: str, resource: dict[str, str], payload: dict[str, Any]) -> None:
    """Send one event to the Prefect server (a flow run's context adds the flow run, flow and
    deployment as related resources; the deployment is added here too, for events sent from a
    subflow, whose own run has none: the deployments' flows run the project's flows as
    subflows, and the automations of ``--notify`` match on the deployment)."""
    from prefect.events import emit_event

    emit_event(event=event, resource=resource, payload=payload, related=deployment_related())


def deployment_related() -> list[dict[str, str]]:
    """The deployment whose run this is (its subflows' too), as a related resource; none
    outside a deployment's run."""
    from prefect.runtime import deployment

    found = deployment.id
    if not found:
        return []
    return [
        {
            "prefect.resource.id": f"prefect.deployment.{found}",
            "prefect.resource.role": "deployment",
        }
    ]


def emit_promoted(model: str, version: str, reason: str, tracking_uri: str) -> None:
    page = version_page(mlflow_ui_for(tracking_uri), model, version)
    payload = {"model": model, "version": version, "reason": reason, "mlflow_url": page}
    emit(MODEL_PROMOTED, model_resource(model, version), payload)


def emit_champion_moved(model: str, version: str) -> None:
    """``champion`` of ``model`` now names ``version``: the guard's deployment reviews it."""
    resource = {"prefect.resource.id": f"{PREFIX}.registry.{model}", "model": model}
    emit(CHAMPION_MOVED, resource, {"model": model, "version": version})


def emit_reverted(model: str, version: str, reason: str, tracking_uri: str) -> None:
    page = version_page(mlflow_ui_for(tracking_uri), model, version)
    payload = {"model": model, "version": version, "reason": reason, "mlflow_url": page}
    emit(CHAMPION_REVERTED, model_resource(model, version), payload)


def emit_drift(model: str, version: str, reason: str, mlflow_url: str) -> None:
    payload = {"model": model, "version": version, "reason": reason, "mlflow_url": mlflow_url}
    emit(DRIFT_FOUND, model_resource(model, version), payload)


def emit_folder_event(event: str, kind: str, folder: Path, payload: dict[str, Any]) -> None:
    resource = {"prefect.resource.id": folder_resource(kind, folder), "path": str(folder)}
    emit(event, resource, payload)
