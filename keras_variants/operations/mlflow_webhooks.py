"""MLflow's registry webhooks as the guard receives them: is a delivery signed with our
secret (:func:`signature_problem`), is it a ``champion`` move (:func:`champion_move`), and the
webhook itself, made or updated on the MLflow server (:func:`register`).

MLflow 3 signs a delivery as the Standard Webhooks do: ``X-MLflow-Signature: v1,<base64 of
HMAC-SHA256(secret, "<X-MLflow-Delivery-Id>.<X-MLflow-Timestamp>.<body>")>``, the timestamp
in Unix seconds (mlflow/webhooks/delivery.py, MLflow 3.17). The body of an alias set:
``{"entity": "model_version_alias", "action": "created", "timestamp": ..., "data":
{"name": ..., "alias": ..., "version": ...}}``. Pure functions but :func:`register`; every
problem is a short sentence of our own that never repeats what was sent.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

SIGNATURE_HEADER = "x-mlflow-signature"
TIMESTAMP_HEADER = "x-mlflow-timestamp"
DELIVERY_HEADER = "x-mlflow-delivery-id"
MAX_AGE_S = 300  # a delivery older (or newer) than this is refused: no replays
EVENT = "model_version_alias.created"
WEBHOOK_NAME = "variants-guard"
SECRET_ENV = "VARIANTS_WEBHOOK_SECRET"
MIN_SECRET_CHARS = 16
_VERSION = re.compile(r"[1-9][0-9]{0,9}")
_NAME_CHARS = 256


class BadDelivery(ValueError):
    """A delivery that is not a webhook of MLflow's; the message is ours, never its content."""


@dataclass(frozen=True)
class ChampionMove:
    model: str
    version: str


def signature_problem(
    secret: str, headers: dict[str, str], body: bytes, now: float, max_age: float = MAX_AGE_S
) -> str | None:
    """None when ``body`` is signed with ``secret`` as MLflow signs it, within ``max_age``
    seconds of ``now``; else what is wrong, in a few words."""
    signature = headers.get(SIGNATURE_HEADER)
    stamp = headers.get(TIMESTAMP_HEADER, "")
    delivery = headers.get(DELIVERY_HEADER)
    if not signature or not delivery:
        return "the delivery is not signed (no X-MLflow-Signature or X-MLflow-Delivery-Id)"
    if not stamp.isdigit() or len(stamp) > 12:
        return "the X-MLflow-Timestamp is not a Unix time"
    if abs(now - int(stamp)) > max_age:
        return f"the delivery is more than {max_age:g} s away from now (a replay, or a clock off)"
    version, _, sent = signature.partition(",")
    signed = f"{delivery}.{stamp}.".encode() + body
    expected = base64.b64encode(hmac.new(secret.encode(), signed, hashlib.sha256).digest())
    if version != "v1" or not hmac.compare_digest(sent.encode(), expected):
        return "the X-MLflow-Signature does not match: check the webhook's secret"
    return None


def champion_move(
    body: bytes, models: frozenset[str], alias: str = "champion"
) -> ChampionMove | None:
    """The move of ``alias`` to a version of one of ``models`` that ``body`` announces; None
    for any other registry event (another alias, model or kind of event); BadDelivery when
    it is not an MLflow webhook body."""
    try:
        message = json.loads(body)
    except (ValueError, RecursionError):
        raise BadDelivery("the body is not JSON") from None
    if not isinstance(message, dict) or not isinstance(message.get("data"), dict):
        raise BadDelivery('the body is not an MLflow webhook: no "data" object')
    entity, action = message.get("entity"), message.get("action")
    if not isinstance(entity, str) or not isinstance(action, str):
        raise BadDelivery('the body is not an MLflow webhook: no "entity" and "action"')
    if f"{entity}.{action}" != EVENT:
        return None
    data = message["data"]
    name, moved, version = data.get("name"), data.get("alias"), data.get("version")
    if not all(isinstance(v, str) for v in (name, moved, version)):
        raise BadDelivery('an alias event needs "name", "alias" and "version" as strings')
    if len(name) > _NAME_CHARS or not _VERSION.fullmatch(version):
        raise BadDelivery("the alias event's name or version is not one MLflow makes")
    if moved != alias or name not in models:
        return None
    return ChampionMove(name, version)


def register(client: MlflowClient, url: str, secret: str) -> str:
    """Make (or update) the webhook :data:`WEBHOOK_NAME` on the MLflow server ``client``
    talks to: alias sets, POSTed to ``url``, signed with ``secret``. Its id."""
    from mlflow.entities.webhook import WebhookStatus

    events: list = [EVENT]
    description = "variants schedule --guard-champion: checks a champion set by hand"
    for webhook in client.list_webhooks():
        if webhook.name == WEBHOOK_NAME:
            client.update_webhook(
                webhook.webhook_id, url=url, events=events, secret=secret,
                description=description, status=WebhookStatus.ACTIVE,
            )  # fmt: skip
            return webhook.webhook_id
    made = client.create_webhook(WEBHOOK_NAME, url, events, description, secret)
    return made.webhook_id
