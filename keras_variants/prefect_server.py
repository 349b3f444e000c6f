"""Prefect's temporary server, as this tool runs it: Prefect's own server (``uvicorn`` on its
app factory, the command Prefect's ``SubprocessASGIServer`` runs), started as a process of
its own before the command imports Prefect, so that the two load side by side and the
command never imports the server's code. Prefect is pointed at it through
``PREFECT_API_URL`` (inherited by the processes started from here). It ends with the
command: stopped at exit, and on Linux sent SIGTERM when the command dies in any way.

Unless the command is verbose, the server's own output (the tracebacks it logs when its
SQLite database is busy, say, which its clients ride out) goes to a log file, named if the
server fails to start and removed when it stops.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import ctypes.util
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from keras_variants.errors import VariantsError

_server: subprocess.Popen | None = None  # the temporary server this process started
_port = 0
_log: Path | None = None  # where its output goes, when not to the command's terminal


def spawn(quiet: bool = True) -> None:
    """Start the server now, unless ``PREFECT_API_URL`` names one; call before Prefect is
    imported, then :func:`adopt` once its settings are read. ``quiet``: its output to a
    log file, not the terminal."""
    global _server, _port, _log
    if _server is not None or os.environ.get("PREFECT_API_URL"):
        return
    _port = _free_port()
    if quiet:
        handle, name = tempfile.mkstemp(prefix="variants-prefect-server-", suffix=".log")
        os.close(handle)
        _log = Path(name)
    _server = _spawn_server(_port, _log)
    atexit.register(stop)


def adopt(settings: Any) -> EarlyServer:
    """Point Prefect at the server :func:`spawn` started, or stop it when Prefect's profile
    names a server or allows no temporary one (read only now)."""
    if _server is None:
        return EarlyServer()
    url = f"http://127.0.0.1:{_port}/api"
    if settings.api.url == url:  # adopted already (a second command in this process)
        return EarlyServer(_server, settings.server.ephemeral.startup_timeout_seconds)
    if settings.api.url or not settings.server.ephemeral.enabled:
        stop()
        return EarlyServer()
    from prefect.context import refresh_global_settings_context

    os.environ["PREFECT_API_URL"] = url
    os.environ["PREFECT_UI_URL"] = ""  # it serves no UI: no "View at" links to it
    refresh_global_settings_context()  # this process's settings see the URL too
    return EarlyServer(_server, settings.server.ephemeral.startup_timeout_seconds)


class EarlyServer:
    """Prefect's temporary server: a process of its own, started before Prefect is even
    imported here, so the two load side by side."""

    def __init__(self, process: subprocess.Popen | None = None, timeout: float = 0) -> None:
        self._process = process
        self._timeout = timeout

    def wait(self) -> None:
        """Return once the server answers; one clear error if it never does."""
        if self._process is None:
            return
        import httpx

        url = f"{os.environ['PREFECT_API_URL']}/health"
        deadline = time.monotonic() + self._timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                break
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(url, timeout=2).status_code == 200:
                    return
            time.sleep(0.05)
        code = self._process.poll()
        log = stop(keep_log=True)
        ended = f"it ended with exit code {code}" if code is not None else "it did not answer"
        output = f"its output is in {log}" if log else "run again with --verbose to see its output"
        raise VariantsError(
            f"Prefect's temporary server did not start ({ended} within {self._timeout:.0f} s); "
            f"{output}, or start one with 'prefect server start' and set PREFECT_API_URL"
        )


def _spawn_server(port: int, log: Path | None) -> subprocess.Popen:
    """Prefect's temporary server on ``port``, as Prefect itself starts one (its settings
    come from the same environment and profile), run by :func:`_serve`; its output to
    ``log`` if given."""
    env = {
        **os.environ,
        "PREFECT_UI_ENABLED": "0",
        "PREFECT__SERVER_EPHEMERAL": "1",
        "PREFECT__SERVER_FINAL": "1",
    }
    command = [sys.executable, "-m", __name__, str(port)]
    if log is None:
        return subprocess.Popen(command, env=env, preexec_fn=_ends_with_parent)
    with log.open("ab") as output:
        return subprocess.Popen(
            command, env=env, stdout=output, stderr=subprocess.STDOUT, preexec_fn=_ends_with_parent
        )


def _serve(port: int) -> None:
    """In the server's process: Prefect's app on uvicorn. Its start-up (creating or migrating
    Prefect's database, registering blocks) runs under a lock in Prefect's home, so that two
    commands started at once on a new home do not migrate one database twice at once."""
    import asyncio
    import fcntl

    import uvicorn
    from prefect.settings import get_current_settings

    app = "prefect.server.api.server:create_app"
    config = uvicorn.Config(
        app, factory=True, host="127.0.0.1", port=port, log_level="error", lifespan="on"
    )
    server = uvicorn.Server(config)
    home = Path(get_current_settings().home)
    home.mkdir(parents=True, exist_ok=True)
    with open(home / ".keras-variants-server-start.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)

        async def serve() -> None:
            serving = asyncio.ensure_future(server.serve())
            while not (server.started or serving.done()):
                await asyncio.sleep(0.02)
            fcntl.flock(lock, fcntl.LOCK_UN)  # started: the next one may start
            await serving

        asyncio.run(serve())
    if not server.started:
        sys.exit(3)  # as uvicorn's own command on a failed start-up


def _ends_with_parent() -> None:
    """In the server's process, before it runs: on Linux, a SIGTERM when this process ends
    in any way (killed before its exit handlers run, too), so no server is left behind."""
    if sys.platform == "linux":
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _free_port() -> int:
    """A free port of 127.0.0.1 (the system's choice, released for the server to take)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop(keep_log: bool = False) -> Path | None:
    """Ship Prefect's pending logs and events, then stop the temporary server now (its
    runs are kept in Prefect's database, as with Prefect's own temporary server); its log
    file is removed unless ``keep_log`` (then returned)."""
    global _server, _log
    if _server is None:
        return None
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        with contextlib.suppress(Exception):  # best effort: the run itself is over
            worker.drain_all(timeout=10)
    process, _server = _server, None
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    os.environ.pop("PREFECT_API_URL", None)
    os.environ.pop("PREFECT_UI_URL", None)
    from prefect.context import refresh_global_settings_context

    refresh_global_settings_context()
    log, _log = _log, None
    if log is not None and not keep_log:
        log.unlink(missing_ok=True)
    return log


if __name__ == "__main__":  # the server's process, started by _spawn_server
    _serve(int(sys.argv[1]))
