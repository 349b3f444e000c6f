"""The scoring server's HTTP edge: a request's headers, its body read chunk by chunk and
refused past the limit before it is held in memory, its JSON checked for shape (the model
checks each input), and every answer other than 200 as :class:`ApiError`: a status, a code
and one short sentence of our own that never repeats what the client sent."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from keras_variants.serving.limits import MC_SAMPLES_RULE, mc_samples_allowed

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

REQUEST_KEYS, PARAM_KEYS = {"inputs", "params"}, {"mc_samples"}
MAX_ERROR_BYTES = 300


class ApiError(Exception):
    """An answer other than 200: the status, a code and one sentence of our own."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}

    def body(self) -> bytes:
        body = json.dumps({"error_code": self.code, "message": self.message}).encode()
        assert len(body) < MAX_ERROR_BYTES, self.code  # our own sentences stay short
        return body


def read_headers(scope: Scope) -> dict[bytes, bytes]:
    return {name.lower(): value for name, value in scope["headers"]}


async def read_body(
    headers: dict[bytes, bytes], receive: Receive, limit: int, deadline: float
) -> bytes:
    """The whole body, read chunk by chunk and refused (413) as soon as it passes ``limit``
    bytes, whether it announced its length or came chunked."""
    too_large = ApiError(
        413, "REQUEST_TOO_LARGE",
        f"the request body is over the limit of {limit:,} bytes; split the request",
        {"connection": "close"},
    )  # fmt: skip
    length = headers.get(b"content-length")
    if length is not None:
        if not length.isdigit():
            raise ApiError(400, "MALFORMED_REQUEST", "the Content-Length header is not a number")
        if int(length) > limit:
            raise too_large
    chunks, size = [], 0
    while True:
        remaining = deadline - time.monotonic()
        try:
            message = await asyncio.wait_for(receive(), max(remaining, 0))
        except TimeoutError:
            raise ApiError(
                408, "REQUEST_TIMEOUT", "the request body did not arrive in time",
                {"connection": "close"},
            ) from None  # fmt: skip
        if message["type"] == "http.disconnect":
            raise ApiError(400, "CLIENT_GONE", "the client closed the connection")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def parse_request(raw: bytes) -> tuple[list[Any], dict[str, Any]]:
    """The request's inputs and params, checked for shape only (the model checks each
    input); the messages name the field, never the value sent."""
    try:
        request = json.loads(raw)
    except (ValueError, RecursionError):  # not UTF-8, not JSON, or nested too deep
        raise ApiError(400, "MALFORMED_REQUEST", "the body is not valid JSON") from None
    if not isinstance(request, dict):
        raise ApiError(400, "MALFORMED_REQUEST", 'the body must be a JSON object with "inputs"')
    if not set(request) <= REQUEST_KEYS:
        raise ApiError(
            400, "MALFORMED_REQUEST",
            'the body has a key other than "inputs" and "params"; send only those',
        )  # fmt: skip
    if "inputs" not in request:
        raise ApiError(400, "MALFORMED_REQUEST", 'the body has no "inputs"; send a list')
    inputs = request["inputs"]
    if not isinstance(inputs, list):
        raise ApiError(400, "INVALID_PARAMETER_VALUE", '"inputs" must be a list')
    params = request.get("params") or {}
    if not isinstance(params, dict):
        raise ApiError(400, "INVALID_PARAMETER_VALUE", '"params" must be a JSON object')
    if not set(params) <= PARAM_KEYS:
        raise ApiError(
            400, "INVALID_PARAMETER_VALUE",
            '"params" has a key other than "mc_samples"; send only that one',
        )  # fmt: skip
    samples = params.get("mc_samples", 0)
    if not mc_samples_allowed(samples):
        raise ApiError(400, "INVALID_PARAMETER_VALUE", MC_SAMPLES_RULE)
    return inputs, {"mc_samples": samples}


async def respond(send: Send, status: int, body: bytes, headers: dict[str, str]) -> None:
    content_type = b"text/plain" if body == b"\n" else b"application/json"
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(body)).encode()),
                *((k.encode(), v.encode()) for k, v in headers.items()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
