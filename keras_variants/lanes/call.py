"""A call of a function where TensorFlow work runs: the type that code taking a lane's
``call`` declares, and the call in this process. Nothing heavy is imported here, so that a
caller (the gate, the data checks) does not depend on how lanes are started."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
# Runs fn(*args) somewhere and returns its result: Lane.call, or call_here.
Call = Callable[..., Any]


def call_here(fn: Callable[..., T], /, *args: Any) -> T:
    """``fn(*args)`` in this process."""
    return fn(*args)
