"""``--notify URL``: one JSON message per thing that needs a person, posted by the Prefect
server's automations through a webhook block, so a slow or unreachable URL never touches a
run (the server's action fails and logs it; the run goes on).

The message: ``event`` (``failed`` | ``crashed`` | ``drift`` | ``promoted`` | ``reverted``: a
champion set by hand that the guard reverted), ``deployment``,
``flow_run``, ``model``, ``version``, a one-line ``reason`` and links to the Prefect and MLflow
pages. :func:`message_template` writes it as a Jinja template that the server renders with
the triggering event and its flow run; :func:`install` saves the block and the automations.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit
from uuid import UUID

from keras_variants.operations import events

BLOCK_NAME = "variants-notify"
AUTOMATION_PREFIX = "variants notify"
REASON_CHARS = 300

_ONE_LINE = f"| replace('\\n', ' ') | truncate({REASON_CHARS}) | tojson"
# The fields that come from the event, as Jinja expressions, by kind of message; the others
# are constants written when the automation is made.
_FROM_EVENT = {
    "run-end": {
        "event": "flow_run.state.name | lower | tojson",
        "flow_run": "flow_run.name | tojson",
        "reason": f"(flow_run.state.message or flow_run.state.name) {_ONE_LINE}",
    },
    "model-event": {
        "flow_run": "flow_run.name | tojson",
        "model": "event.payload.model | tojson",
        "version": "event.payload.version | tojson",
        "reason": f"event.payload.reason {_ONE_LINE}",
        "mlflow_url": "(event.payload.mlflow_url or mlflow_ui) | tojson",
    },
}
FIELDS = (
    "event",
    "deployment",
    "flow_run",
    "model",
    "version",
    "reason",
    "prefect_url",
    "mlflow_url",
)


@dataclass(frozen=True)
class Watched:
    """A deployment whose runs and events notify: its id and name, and the model it scores
    (None for training, whose model is only known once something is promoted); ``guards``:
    the guard's reviews, which promote (a champion set by hand, confirmed) or revert."""

    deployment_id: UUID
    name: str
    model: str | None = None
    guards: bool = False

    def model_events(self) -> list[tuple[str, str]]:
        """The kinds of message its runs' events make, with the event each comes from."""
        if self.guards:
            return [("reverted", events.CHAMPION_REVERTED), ("promoted", events.MODEL_PROMOTED)]
        if self.model:
            return [("drift", events.DRIFT_FOUND)]
        return [("promoted", events.MODEL_PROMOTED)]


def message_template(
    kind: str, deployment: str, model: str | None, prefect_ui: str, mlflow_ui: str
) -> str:
    """The message as a Jinja template for the server to render. ``kind``: ``run-end`` (a
    failed or crashed run; ``event`` is the run's state), ``drift``, ``promoted`` or
    ``reverted`` (model, version, reason and MLflow link from the event's payload)."""
    from_event = _FROM_EVENT["run-end" if kind == "run-end" else "model-event"]
    constants = {
        "event": kind,
        "deployment": deployment,
        "model": model,
        "version": None,
        "prefect_url": None,  # below: it holds the run's id
        "mlflow_url": mlflow_ui,
    }
    run_page = json.dumps(f"{prefect_ui.rstrip('/')}/runs/flow-run/")
    parts = []
    for key in FIELDS:
        if key == "prefect_url":
            value = f"{{{{ ({run_page} ~ flow_run.id) | tojson }}}}"
        elif key in from_event:
            value = "{{ " + from_event[key].replace("mlflow_ui", json.dumps(mlflow_ui)) + " }}"
        else:
            value = json.dumps(constants[key])
        parts.append(f"{json.dumps(key)}: {value}")
    return "{" + ", ".join(parts) + "}"


def unreachable(url: str, timeout: float = 2.0) -> str | None:
    """Why ``url`` cannot be reached (a TCP connection to its host and port), or None."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "not an http(s) URL"
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout):
            return None
    except OSError as exc:
        return exc.strerror or str(exc) or type(exc).__name__


def check_url(url: str) -> None:
    """Refuse what is not an http(s) URL, before anything starts."""
    from keras_variants.errors import ConfigError

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"--notify: {url!r} is not an http(s) URL; pass e.g. https://hooks.example.com/variants"
        )


def install(url: str, watched: list[Watched], prefect_ui: str, mlflow_ui: str) -> list[str]:
    """Save the webhook block and (re)create the automations: a failed or crashed run of each
    watched deployment, and drift and promotions in their runs. Returns their names."""
    from prefect.automations import Automation
    from prefect.blocks.webhook import Webhook
    from prefect.client.orchestration import get_client
    from prefect.events.actions import CallWebhook
    from prefect.events.schemas.automations import EventTrigger, Posture

    block = Webhook(method="POST", url=url, headers={"Content-Type": "application/json"})
    block_id = block.save(BLOCK_NAME, overwrite=True)
    wanted: list[tuple[str, set[str], Watched, str]] = []
    for deployment in watched:
        wanted.append(
            (
                f"{AUTOMATION_PREFIX}: {deployment.name} failed or crashed",
                {"prefect.flow-run.Failed", "prefect.flow-run.Crashed"},
                deployment,
                "run-end",
            )
        )
        for kind, event in deployment.model_events():
            name = f"{AUTOMATION_PREFIX}: {deployment.name} {kind}"
            wanted.append((name, {event}, deployment, kind))
    names = []
    with get_client(sync_client=True) as client:
        for name, expect, deployment, kind in wanted:
            for old in client.read_automations_by_name(name):
                client.delete_automation(old.id)
            template = message_template(
                kind, deployment.name, deployment.model, prefect_ui, mlflow_ui
            )
            Automation(
                name=name,
                description=_description(kind, deployment.name),
                trigger=EventTrigger(
                    expect=expect,
                    match_related={
                        "prefect.resource.role": "deployment",
                        "prefect.resource.id": f"prefect.deployment.{deployment.deployment_id}",
                    },
                    posture=Posture.Reactive,
                    threshold=1,
                ),
                actions=[CallWebhook(block_document_id=block_id, payload=template)],
            ).create()
            names.append(name)
    return names


def _description(kind: str, deployment: str) -> str:
    """What an automation does, as the Prefect UI's automations page shows it (not the URL:
    the webhook block keeps it secret, as it may carry a token)."""
    when = {
        "run-end": f"a run of {deployment} fails or crashes",
        "drift": f"a scoring run of {deployment} finds drift",
        "promoted": f"a run of {deployment} promotes a model",
        "reverted": f"a run of {deployment} reverts a champion set by hand",
    }[kind]
    return f"POST a JSON message to the --notify URL when {when} (block {BLOCK_NAME})"


def render(template: str, context: Mapping[str, object]) -> str:
    """Render ``template`` as the server would (its sandboxed Jinja and filters): for tests."""
    from prefect.server.utilities.user_templates import render_user_template_sync

    return render_user_template_sync(template, dict(context))
