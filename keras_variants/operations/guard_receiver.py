"""The guard's receiver: the HTTP endpoint MLflow's webhooks post to (``POST
/mlflow-webhook``), run beside ``variants schedule --guard-champion`` in a thread of its own.

It checks each delivery's signature (:mod:`~keras_variants.operations.mlflow_webhooks`) and
hands a ``champion`` move on as a Prefect event (``on_move``), which starts the guard's
deployment: the review itself (scoring models) runs there, as a flow run, never in the
receiver. Every request is bounded (body size, time, requests at once), answered in the
receiver's own short words (202 for a move taken, 200 for an event it does not act on, 401
for a bad signature, 400 for a malformed body), and logged in one line without its content.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from keras_variants.errors import ConfigError
from keras_variants.operations import events, mlflow_webhooks
from keras_variants.operations.mlflow_webhooks import (
    BadDelivery,
    ChampionMove,
    champion_move,
    signature_problem,
)
from keras_variants.serving.http_edge import (
    ApiError,
    Receive,
    Scope,
    Send,
    read_body,
    read_headers,
    respond,
)

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

PATH = "/mlflow-webhook"
MAX_BODY_BYTES = 64 * 2**10  # an alias event is ~200 bytes
TIMEOUT_S = 10.0
MAX_AT_ONCE = 16
LOG = logging.getLogger("keras_variants.guard")


class GuardReceiver:
    """The ASGI app: ``secret`` signs MLflow's deliveries; ``on_move`` is called (in a
    worker thread) with each ``champion`` move of one of ``models``."""

    def __init__(
        self,
        secret: str,
        models: frozenset[str],
        on_move: Callable[[ChampionMove], None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.secret, self.models, self.on_move, self.clock = secret, models, on_move, clock
        self.at_once = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            return
        started = time.perf_counter()
        outcome = "-"
        try:
            outcome, status, body = await self._answer(scope, receive)
        except ApiError as error:
            status, body, outcome = error.status, error.body(), error.code.lower()
        except Exception as error:  # never a traceback nor a payload to the client
            LOG.error("guard receiver: internal error %s", type(error).__name__)
            status = 500
            body = ApiError(500, "INTERNAL_ERROR", "the receiver failed; MLflow retries").body()
        await respond(send, status, body, {})
        LOG.info(
            "%s guard receiver: %s %s %s latency_ms=%.1f",
            datetime.now(UTC).isoformat(timespec="milliseconds"),
            "POST" if scope["method"] == "POST" else "-",
            status,
            outcome,
            (time.perf_counter() - started) * 1000,
        )

    async def _answer(self, scope: Scope, receive: Receive) -> tuple[str, int, bytes]:
        if scope["path"] != PATH:
            raise ApiError(404, "NOT_FOUND", f"no such path; MLflow's webhook posts to {PATH}")
        if scope["method"] != "POST":
            raise ApiError(405, "METHOD_NOT_ALLOWED", "use POST", {"allow": "POST"})
        if self.at_once >= MAX_AT_ONCE:
            raise ApiError(503, "BUSY", "too many deliveries at once; MLflow retries",
                           {"retry-after": "1"})  # fmt: skip
        self.at_once += 1
        try:
            headers = {k.decode("latin-1"): v.decode("latin-1")
                       for k, v in read_headers(scope).items()}  # fmt: skip
            raw = await read_body(
                read_headers(scope), receive, MAX_BODY_BYTES, time.monotonic() + TIMEOUT_S
            )
            problem = signature_problem(self.secret, headers, raw, self.clock())
            if problem is not None:
                raise ApiError(401, "BAD_SIGNATURE", problem)
            try:
                move = champion_move(raw, self.models)
            except BadDelivery as exc:
                raise ApiError(400, "MALFORMED_DELIVERY", str(exc)) from None
            if move is None:
                return "ignored", 200, b'{"status": "ignored"}'
            await asyncio.wait_for(asyncio.to_thread(self.on_move, move), TIMEOUT_S)
            return "champion-moved", 202, b'{"status": "accepted"}'
        finally:
            self.at_once -= 1


def start_receiver(app: GuardReceiver, host: str, port: int) -> Callable[[], None]:
    """Serve ``app`` on ``host``:``port`` in a daemon thread; returns the function that
    stops it. Raises when the port cannot be listened on."""
    import uvicorn

    _log_lines()
    server = uvicorn.Server(
        uvicorn.Config(
            app, host=host, port=port, log_config=None, access_log=False, server_header=False,
            limit_concurrency=64, timeout_keep_alive=5, lifespan="on",
        )
    )  # fmt: skip
    thread = threading.Thread(target=server.run, name="guard-receiver", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise OSError(f"the guard's receiver cannot listen on {host}:{port}")
        time.sleep(0.05)

    def stop() -> None:
        server.should_exit = True
        thread.join(timeout=10)

    return stop


def start_guard(
    client: MlflowClient, url: str, secret: str, say: Callable[[str], None]
) -> Callable[[], None]:
    """Start the receiver where ``url`` points, make (or update) MLflow's webhook to post
    there, and hand on the ``champion`` moves made while no receiver ran (a model whose
    champion is not the one on record); returns the function that stops the receiver."""
    from mlflow.exceptions import MlflowException

    from keras_variants.registry import guard
    from keras_variants.registry.versions import REGISTERED_MODELS, alias_version

    models = frozenset(REGISTERED_MODELS.values())

    def moved(move: ChampionMove) -> None:
        say(f"guard: {move.model} 'champion' is v{move.version} now; review requested")
        events.emit_champion_moved(move.model, move.version)

    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    try:
        stop = start_receiver(GuardReceiver(secret, models, moved), parts.hostname, parts.port)
    except OSError as exc:
        raise ConfigError(f"--guard-champion: {exc}; pass another port") from None
    try:
        mlflow_webhooks.register(client, url, secret)
    except MlflowException as exc:
        stop()
        raise ConfigError(
            f"--guard-champion: the MLflow server at {client.tracking_uri} refused the "
            f"webhook ({exc.message.splitlines()[0][:200]}); it must allow webhooks to "
            f"{parts.scheme}:// URLs on this network (MLFLOW_WEBHOOK_ALLOWED_SCHEMES, "
            "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS on the server)"
        ) from None
    for name in sorted(models):
        try:
            known = guard.adopt(client, name)
        except MlflowException:
            continue  # not registered yet
        champion = alias_version(client, name, "champion")
        if champion is not None and champion != known:
            moved(ChampionMove(name, champion))
    say(f"guard: MLflow's webhook '{mlflow_webhooks.WEBHOOK_NAME}' posts to {url}")
    return stop


def _log_lines() -> None:
    """The receiver's one line per delivery on stderr, without its content."""
    import sys

    if LOG.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    LOG.addHandler(handler)
    LOG.setLevel(logging.INFO)
    LOG.propagate = False
