"""The scoring server: a registered model behind MLflow's scoring protocol, with every
request bounded (size, cost, time, concurrency), answered in its own words and logged
without its payload.

``POST /invocations`` takes ``{"inputs": [...], "params": {"mc_samples": N}}`` and answers
``{"predictions": [...]}``, as ``mlflow models serve`` does, with the header
``X-Model-Version`` naming the version that answered; ``GET /ping`` and ``/health`` say it is
up, ``GET /version`` which model version it serves. The version can change while it serves
(:meth:`ScoringApp.swap`, called by :mod:`keras_variants.serving.follow`): each request is
answered whole by the version that was served when it arrived. A plain ASGI app (uvicorn
runs it; :mod:`keras_variants.cli.serve` starts it), so that the body is read chunk by
chunk and refused past the limit before it is held in memory. Every error is a short JSON
``{"error_code": ..., "message": ...}`` that never repeats what the client sent.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from keras_variants.data.preprocessing import png_base64
from keras_variants.serving.answers import Answer, ServedModel, Stored
from keras_variants.serving.http_edge import (
    ApiError,
    Receive,
    Scope,
    Send,
    parse_request,
    read_body,
    read_headers,
    respond,
)
from keras_variants.serving.limits import Limits
from keras_variants.serving.requests import BadRequest, Stopped, check_stop, stopping

ACCESS_LOG = logging.getLogger("keras_variants.access")
ROUTES = {"/invocations": "POST", "/ping": "GET", "/health": "GET", "/version": "GET"}
OPEN_ROUTES = ("/ping", "/health")  # health checks need no token
VERSION_HEADER = "x-model-version"  # on /invocations and /version: the version that answered


@dataclass(frozen=True)
class ServedVersion:
    """What ``GET /version`` answers."""

    model: str
    version: str
    model_id: str | None = None


# A predictor takes the checked inputs and params and returns the answers and what it
# decoded the inputs into (word ids, pixels); the served pyfunc model's predict, or
# anything with its signature in a test.
Predictor = Callable[[list[Any], dict[str, Any]], tuple[Sequence[Answer], Stored | None]]
# Called once per answered request, in its bounded work, with the inputs, what the
# predictor decoded them into, the answers and the prediction's latency (ms).
PredictionSink = Callable[[list[Any], Stored | None, Sequence[Answer], float], None]


@dataclass(frozen=True)
class Served:
    """One loaded version as the app answers with it: its predictor, what ``/version``
    says, and where its answered requests go (its prediction log)."""

    predictor: Predictor
    version: ServedVersion
    sink: PredictionSink | None = None


def pyfunc_predictor(python_model: ServedModel) -> Predictor:
    """The served pyfunc model's own ``predict`` (its input checks included): what
    ``mlflow models serve`` would call, without MLflow's schema step. It has answered once
    already, so the first client does not wait for the compilation."""

    def predict(inputs: list[Any], params: dict[str, Any]) -> tuple[Sequence[Answer], Stored]:
        return python_model.predict_stored(inputs, params)

    if python_model.variant.dataset == "mnist":
        predict([png_base64(np.zeros((28, 28), np.uint8))], {"mc_samples": 0})
    else:
        predict(["a good film"], {"mc_samples": 0})
    return predict


class ScoringApp:
    """The ASGI app. ``token`` (when set) is required as ``Authorization: Bearer`` on
    every route but the health checks; ``sink`` receives each answered request. What it
    serves is :attr:`current`, replaced whole by :meth:`swap`."""

    def __init__(
        self,
        predictor: Predictor,
        served: ServedVersion,
        limits: Limits,
        token: str | None = None,
        sink: PredictionSink | None = None,
    ) -> None:
        self.current = Served(predictor, served, sink)
        self.limits = limits
        self.token = token.encode() if token else None
        # Its own queue is the waiting line: a worker takes the next prediction as it
        # finishes one, without a turn of the event loop (which waits for the GIL).
        self.workers = ThreadPoolExecutor(limits.max_concurrent, thread_name_prefix="predict")
        # Requests reading their body, waiting or predicting; on the event loop only.
        self.admitted = 0

    @property
    def served(self) -> ServedVersion:
        return self.current.version

    def swap(self, served: Served) -> Served:
        """Answer every request that arrives from now on with ``served`` (loaded, verified
        and warmed up by the caller); the requests already admitted finish with the version
        they started with, which is released once they have. One assignment, so no request
        waits for it nor sees half of each. Returns the version replaced."""
        replaced, self.current = self.current, served
        return replaced

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return  # no websockets
        started = time.perf_counter()
        route = scope["path"] if scope["path"] in ROUTES else "-"
        method = scope["method"] if scope["method"] in ("GET", "POST", "HEAD") else "-"
        inputs: int | None = None
        try:
            inputs, status, body, headers = await self._answer(scope, receive, route)
        except ApiError as error:
            status, body, headers = error.status, error.body(), error.headers
        except Exception as error:  # never a traceback nor a payload to the client
            ACCESS_LOG.error("internal error %s", type(error).__name__)
            status, headers = 500, {}
            body = ApiError(500, "INTERNAL_ERROR", "the server failed; try again").body()
        await respond(send, status, body, headers)
        latency = (time.perf_counter() - started) * 1000
        ACCESS_LOG.info(
            "%s %s %s %s inputs=%s latency_ms=%.1f",
            datetime.now(UTC).isoformat(timespec="milliseconds"),
            method,
            route,
            status,
            "-" if inputs is None else inputs,
            latency,
        )

    async def _answer(
        self, scope: Scope, receive: Receive, route: str
    ) -> tuple[int | None, int, bytes, dict[str, str]]:
        if route == "-":
            raise ApiError(404, "NOT_FOUND", "no such path; use POST /invocations")
        if scope["method"] != ROUTES[route]:
            raise ApiError(
                405, "METHOD_NOT_ALLOWED", f"use {ROUTES[route]} for this path",
                {"allow": ROUTES[route]},
            )  # fmt: skip
        headers = read_headers(scope)
        if route not in OPEN_ROUTES:
            self._authenticate(headers)
        if route in OPEN_ROUTES:
            return None, 200, b"\n" if route == "/ping" else b'{"status": "ok"}', {}
        current = self.current  # this request's version, whatever is swapped in meanwhile
        answered_by = {VERSION_HEADER: current.version.version}
        if route == "/version":
            return None, 200, json.dumps(asdict(current.version)).encode(), answered_by
        inputs, status, body = await self._invocations(headers, receive, current)
        return inputs, status, body, answered_by

    def _authenticate(self, headers: dict[bytes, bytes]) -> None:
        if self.token is None:
            return
        sent = headers.get(b"authorization", b"")
        scheme, _, value = sent.partition(b" ")
        if scheme.lower() != b"bearer" or not hmac.compare_digest(value.strip(), self.token):
            raise ApiError(
                401, "UNAUTHENTICATED", "send the header 'Authorization: Bearer <token>'",
                {"www-authenticate": "Bearer"},
            )  # fmt: skip

    async def _invocations(
        self, headers: dict[bytes, bytes], receive: Receive, current: Served
    ) -> tuple[int, int, bytes]:
        media = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if media != b"application/json":
            raise ApiError(
                415, "UNSUPPORTED_MEDIA_TYPE", "send the body as Content-Type: application/json"
            )
        if self.admitted >= self.limits.max_concurrent + self.limits.max_queue:
            raise self._busy()  # at once: the queue is short and bounded
        self.admitted += 1
        deadline = time.monotonic() + self.limits.timeout_s
        released = False
        try:
            raw = await read_body(headers, receive, self.limits.max_request_bytes, deadline)
            inputs, params = parse_request(raw)
            del raw
            cost = len(inputs) * (1 + params.get("mc_samples", 0))
            if cost > self.limits.max_cost:
                raise ApiError(
                    400, "REQUEST_TOO_COSTLY",
                    f"the request needs {cost:,} model passes (inputs x (1 + mc_samples)), "
                    f"over the limit of {self.limits.max_cost:,}; send fewer inputs or samples",
                )  # fmt: skip
            stop = threading.Event()
            future = asyncio.get_running_loop().run_in_executor(
                self.workers, self._predict, inputs, params, stop, current
            )
            # Admission ends when the work has, not when the client got its answer.
            future.add_done_callback(self._finished)
            released = True
            try:
                remaining = max(deadline - time.monotonic(), 0)
                body = await asyncio.wait_for(asyncio.shield(future), remaining)
            except TimeoutError:
                stop.set()  # the work stops at its next batch
                raise ApiError(
                    504, "TIMEOUT",
                    f"the prediction took longer than {self.limits.timeout_s:g} s and was "
                    "stopped; send fewer inputs",
                ) from None  # fmt: skip
            except asyncio.CancelledError:
                stop.set()
                raise
            return len(inputs), 200, body
        finally:
            if not released:
                self.admitted -= 1

    def _busy(self) -> ApiError:
        return ApiError(
            503, "SERVER_BUSY",
            f"the server is answering {self.limits.max_concurrent} requests and has "
            f"{self.limits.max_queue} waiting; retry after a second", {"retry-after": "1"},
        )  # fmt: skip

    def _finished(self, work: asyncio.Future) -> None:
        """The request's work has ended (done callbacks run on the event loop): its place
        is free. Work that ended after its request was answered 504 ends in an error nobody
        awaits; it is taken here, so asyncio logs no "exception was never retrieved" with a
        traceback (the access log has the request's one line)."""
        self.admitted -= 1
        if not work.cancelled():
            work.exception()

    def _predict(
        self,
        inputs: list[Any],
        params: dict[str, Any],
        stop: threading.Event,
        current: Served | None = None,
    ) -> bytes:
        """In a worker thread: the answers of ``current`` (the request's version; default
        the one served now) as the response body, handed to its sink too (within the
        request's time: a stopped request logs nothing)."""
        current = current or self.current
        started = time.perf_counter()
        try:
            with stopping(stop):
                check_stop()  # its time ran out while it waited: nothing of it runs
                answers, stored = current.predictor(inputs, params)
                if current.sink is not None:
                    latency = (time.perf_counter() - started) * 1000
                    current.sink(inputs, stored, answers, latency)
            return json.dumps({"predictions": [a.model_dump() for a in answers]}).encode()
        except BadRequest as error:
            raise ApiError(400, "INVALID_PARAMETER_VALUE", error.message) from None
        except Stopped:
            ACCESS_LOG.warning("a prediction stopped at its timeout, %d inputs", len(inputs))
            raise ApiError(504, "TIMEOUT", "the prediction was stopped") from None

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.workers.shutdown(wait=False, cancel_futures=True)
                await send({"type": "lifespan.shutdown.complete"})
                return
