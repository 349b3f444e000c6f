"""A request to the served model: what it may hold and how its work is bounded.

Its inputs must be a list of non-empty strings within the size limits
(:func:`checked_strings`); anything else is one :class:`BadRequest`, HTTP 400 with one
sentence naming the problem and never the payload. A server gives each request's work a
stop signal (:func:`stopping`); the work calls :func:`check_stop` between steps (batches,
images) and ends with :class:`Stopped` once the request's time is up.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

from keras_variants.serving.limits import MAX_INPUTS


class BadRequest(MlflowException):
    """A request the model cannot answer: HTTP 400 with one sentence naming the problem.

    MLflow's scoring server prefixes the message of any MlflowException raised by
    ``predict`` with the whole payload ("Failed to predict data '...'"); this one keeps its
    own message, so a bad request never echoes what was sent.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message, error_code=INVALID_PARAMETER_VALUE)

    @property
    def message(self) -> str:
        return self._message

    @message.setter
    def message(self, value: str) -> None:
        if not hasattr(self, "_message"):
            self._message = value


class Stopped(Exception):
    """The caller asked the prediction to stop (its time ran out); raised between batches."""


_REQUEST = threading.local()  # the stop event of the request this thread is answering


@contextmanager
def stopping(stop: threading.Event) -> Iterator[None]:
    """Within it, this thread's predictions stop (raise :class:`Stopped`) at their next
    batch once ``stop`` is set: a server's timeout ends the work, not only the answer."""
    _REQUEST.stop = stop
    try:
        yield
    finally:
        _REQUEST.stop = None


def check_stop() -> None:
    """Raise :class:`Stopped` if this thread's request has been told to stop (see
    :func:`stopping`); a no-op outside one. Called between batches of the work."""
    stop = getattr(_REQUEST, "stop", None)
    if stop is not None and stop.is_set():
        raise Stopped


JSON_TYPES = {bool: "boolean", int: "number", float: "number", list: "list", dict: "object"}


def checked_strings(model_input: object, what: str, limit: int) -> list[str]:
    """``model_input`` as a list of non-empty strings within the size limits, or BadRequest."""
    if isinstance(model_input, np.ndarray):
        model_input = model_input.tolist()
    if not isinstance(model_input, list):
        raise BadRequest(f'"inputs" must be a list of {what}s, not {json_type(model_input)}')
    if not model_input:
        raise BadRequest(f'"inputs" is empty; send a list of {what}s')
    if len(model_input) > MAX_INPUTS:
        raise BadRequest(
            f"{len(model_input):,} inputs is over the limit of {MAX_INPUTS:,} per request; "
            "split the request"
        )
    for index, item in enumerate(model_input):
        if not isinstance(item, str):
            raise BadRequest(f"input {index} is {json_type(item)}; send a {what}")
        if not item.strip():
            raise BadRequest(f"input {index} is an empty string; send a {what}")
        if len(item) > limit:
            raise BadRequest(
                f"input {index} has {len(item):,} characters, over the limit of {limit:,}"
            )
    return model_input


def json_type(value: object) -> str:
    if value is None:
        return "null"
    return "a " + JSON_TYPES.get(type(value), type(value).__name__)
