"""Stopping cleanly on Ctrl-C or SIGTERM while variants train in worker threads.

Signals reach only the main thread. :func:`request_stop` (called from the CLI's signal
handler, and by the pipeline flow when it is interrupted) sets a flag that training
(``training.StopOnRequest``) checks after every batch, in every thread and, once lanes share
their flag (:func:`share_stop_flag`), in every lane process; it then raises
KeyboardInterrupt there, so each run ends KILLED. The flow clears it as it starts.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any

_STOP: Any = threading.Event()  # or a multiprocessing Event shared with lanes


def request_stop() -> None:
    _STOP.set()


def clear_stop_request() -> None:
    """Called as a run starts: a stop asked for during an earlier run is not for this one."""
    _STOP.clear()


def stop_requested() -> bool:
    return _STOP.is_set()


def share_stop_flag(flag: Any) -> Any:
    """Use ``flag`` (a ``multiprocessing`` Event that lane processes share) as the stop flag
    from now on; returns the one it replaces."""
    global _STOP
    previous, _STOP = _STOP, flag
    return previous


def install_signal_handlers() -> None:
    """SIGTERM behaves like Ctrl-C: stop every training thread, then unwind the main one."""

    def handle(signum: int, frame: FrameType | None) -> None:
        request_stop()
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
