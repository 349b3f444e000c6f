"""Following an alias: ``variants serve`` on ``champion`` switches to the version the alias
names when it moves, with no request failed or kept waiting.

Every ``interval`` seconds a thread asks which version the alias names (``resolve``, passed
in by the command line: this package never reads the registry). When it names another
version than the one served, the thread loads that version beside the one serving
(``load``: its files verified against those registered, the model loaded and answering
once), and the app switches to it in one assignment (:meth:`~keras_variants.serving.
server.ScoringApp.swap`). A version that fails to load or verify is logged in one line and
not tried again while the alias stays on it: the old version keeps serving. What to do on
each look is :func:`next_version`.

Polling, not MLflow's webhooks: a gate that writes to a local store (``sqlite:///...``)
moves the alias without any server to send a webhook, and a poll sees every move however
it was made.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # importing this module stays cheap: variants serve reads POLL_S early
    from keras_variants.serving.server import ScoringApp, Served

FOLLOW_LOG = logging.getLogger("keras_variants.follow")
POLL_S = 5.0  # a promotion is served within this, plus the new version's load

Resolve = Callable[[], str]  # the version the alias names now
Load = Callable[[str], "Served"]  # a version loaded, verified and warmed up, or an error


def next_version(serving: str, named: str | None, failed: str | None) -> str | None:
    """The version to load next, or None to keep serving ``serving``: ``named`` is the
    version the alias names now (None when it could not be read), ``failed`` the last
    version that failed to load (tried again only once the alias has left it)."""
    if named is None or named in (serving, failed):
        return None
    return named


class Follower:
    """Keeps ``app`` serving the version ``resolve`` names, checking every ``interval``
    seconds in a thread of its own (:meth:`start`, :meth:`stop`); :meth:`check` is one
    look, for tests."""

    def __init__(
        self, app: ScoringApp, alias: str, resolve: Resolve, load: Load, interval: float = POLL_S
    ) -> None:
        self.app, self.alias, self.resolve, self.load = app, alias, resolve, load
        self.interval = interval
        self.failed: str | None = None
        self.unreadable: str | None = None  # why the alias could not be read, said once
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="follow-alias", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopped.set()
        if self.thread.is_alive():
            self.thread.join(timeout=self.interval + 1)

    def _run(self) -> None:
        while not self.stopped.wait(self.interval):
            self.check()

    def check(self) -> str | None:
        """One look at the alias: the version switched to, or None."""
        serving = self.app.served
        named = self._named(serving.version)
        version = next_version(serving.version, named, self.failed)
        if version is None:
            return None
        model = serving.model
        _say(f"{model} '{self.alias}' is v{version} now; loading it beside v{serving.version}")
        started = time.perf_counter()
        try:
            served = self.load(version)
        except Exception as exc:  # any failure leaves the old version serving
            self.failed = version
            _say(
                f"{model} v{version} failed to load or verify ({_first_line(exc)}); "
                f"still serving v{serving.version}",
                logging.WARNING,
            )
            return None
        self.app.swap(served)
        self.failed = None
        seconds = time.perf_counter() - started
        _say(
            f"{model}: now serving v{version} (was v{serving.version}; loaded and verified "
            f"in {seconds:.1f} s)"
        )
        return version

    def _named(self, serving: str) -> str | None:
        """The version the alias names, or None (said once per cause) when it cannot be
        read: the registry is down, the alias was deleted."""
        try:
            named = self.resolve()
        except Exception as exc:  # keep serving; say why once
            why = _first_line(exc)
            if why != self.unreadable:
                _say(
                    f"cannot read '{self.alias}' ({why}); still serving v{serving}", logging.WARNING
                )
            self.unreadable = why
            return None
        if self.unreadable is not None:
            _say(f"'{self.alias}' reads again: v{named}")
            self.unreadable = None
        return named


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300]}" if text else type(exc).__name__


def _say(message: str, level: int = logging.INFO) -> None:
    stamp = datetime.now(UTC).isoformat(timespec="milliseconds")
    FOLLOW_LOG.log(level, "%s follow: %s", stamp, message)
