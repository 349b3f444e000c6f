"""Stopping cleanly on Ctrl-C or SIGTERM while variants train in worker threads.

Signals reach only the main thread. :func:`request_stop` (called from the CLI's signal
handler, and by the pipeline flow when it is interrupted) sets an event that
:class:`StopOnRequest` checks after every batch in every training thread; it then raises
KeyboardInterrupt there, so each run ends KILLED. The flow clears it as it starts.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

import keras

_STOP = threading.Event()


def request_stop() -> None:
    _STOP.set()


def clear_stop_request() -> None:
    """Called as a run starts: a stop asked for during an earlier run is not for this one."""
    _STOP.clear()


class StopOnRequest(keras.callbacks.Callback):
    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if _STOP.is_set():
            self.model.stop_training = True
            raise KeyboardInterrupt("stop requested")

    on_test_batch_end = on_train_batch_end


def install_signal_handlers() -> None:
    """SIGTERM behaves like Ctrl-C: stop every training thread, then unwind the main one."""

    def handle(signum: int, frame: FrameType | None) -> None:
        request_stop()
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
