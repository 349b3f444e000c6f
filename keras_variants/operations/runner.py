"""Serving the project's deployments against a Prefect server, patiently and quietly: the
runner rides out a server restart (:func:`patient_runner`), a watch ends serving with one
line once the server is gone for good (:func:`watch_server`), the flow runs it starts print
no bookkeeping (:func:`quiet_flow_runs`), and :func:`serve_until_stopped` puts them together
around a runner from :func:`new_runner`. What ``variants schedule`` runs once its
deployments are built.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from keras_variants import compat, runtime
from keras_variants.errors import ConfigError, PrefectServerError

if TYPE_CHECKING:
    from prefect.runner import Runner

# Failed polls in a row (PREFECT_RUNNER_POLL_FREQUENCY, 10 s apart) before Prefect's runner
# stops: about a minute unanswered (66 s measured), where Prefect's 3 (~20-30 s) were
# less than a restart takes.
SERVER_POLL_FAILURES = 9
# Without any answer from the Prefect server for this long (a refused or timed-out request;
# any HTTP status is an answer), the schedule stops with one line. Prefect's runner on its
# own may wait out its client's retries for many minutes before it gives up.
SERVER_GONE_AFTER_S = 90.0
# Then serving must have ended within this, or the watch ends the command itself.
SERVER_GRACE_S = 30.0
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def start_server_hint(api: str | None) -> str:
    """The command that starts a Prefect server where ``PREFECT_API_URL`` points (a local
    one; the default when it is unset)."""
    if api:
        parts = urlsplit(api)
        if parts.hostname in LOCAL_HOSTS and parts.port:
            return (
                f"start one with 'prefect server start --host {parts.hostname} --port {parts.port}'"
            )
        if parts.hostname not in LOCAL_HOSTS:
            return f"start it on {parts.hostname}, or point PREFECT_API_URL at a running one"
    return (
        "start one with 'prefect server start --host 127.0.0.1' and set "
        "PREFECT_API_URL=http://127.0.0.1:4200/api"
    )


def prefect_api() -> str:
    """The Prefect server's API URL; one line with the command that starts one otherwise."""
    import httpx
    from prefect.settings import get_current_settings

    api = get_current_settings().api.url
    if not api:
        raise ConfigError(f"schedules need a running Prefect server: {start_server_hint(None)}")
    try:
        httpx.get(f"{api.rstrip('/')}/health", timeout=5).raise_for_status()
    except httpx.HTTPError:
        raise ConfigError(
            f"no Prefect server answers at PREFECT_API_URL={api}: {start_server_hint(api)}"
        ) from None
    return api.rstrip("/")


def patient_runner() -> None:
    """Let Prefect's runner ride out a server restart, quietly.

    The runner polls its server for due runs (and for cancellations) in Prefect's
    ``critical_service_loop``, which stops it after 3 failed polls in a row: measured, the
    schedule ended ~30 s after its server stopped (each refused poll failed at once, without
    the client's retries), and a restarted server can take longer than that to answer. The
    loop also prints every error with its traceback on stdout. Its defaults become
    :data:`SERVER_POLL_FAILURES` failures, and unless verbose, a printer that logs at debug
    level; the runner passes neither, so they apply to it alone in this process (another
    Prefect, whose loop takes other parameters, is left as it is)."""
    defaults: dict[str, object] = {"consecutive": SERVER_POLL_FAILURES}
    if not runtime.is_verbose():
        logger = logging.getLogger("prefect.runner")
        defaults["printer"] = lambda *parts: logger.debug(" ".join(map(str, parts)))
    compat.set_service_loop_defaults(**defaults)


@dataclass(frozen=True)
class ServerWatch:
    """:func:`watch_server`'s two signals: ``gone`` (nothing answered for the watch's time,
    serving interrupted) and ``ended``, which the caller sets once serving has ended."""

    gone: threading.Event
    ended: threading.Event


def watch_server(
    api: str, gone_after: float = SERVER_GONE_AFTER_S, grace: float = SERVER_GRACE_S
) -> ServerWatch:
    """Ask the Prefect server at ``api`` for its health every 5 s, in a thread of its own.
    Once nothing has answered for ``gone_after`` seconds, set ``gone`` and interrupt the
    main thread as Ctrl-C would, which ends Prefect's serving; the caller then says why and
    sets ``ended``. A restart that answers again sooner goes unnoticed. A real SIGINT, not
    ``_thread.interrupt_main``: the signal wakes the event loop at once, where a simulated
    one waits until the loop next wakes by itself (measured: 159 s instead of ~90). If
    serving has not ended ``grace`` seconds later (Prefect's shutdown waiting out its
    client's retries against the lost server: a CI run waited over 400 s), the watch prints
    the same one error line and ends the process with exit status 1."""
    import signal

    import httpx

    watch = ServerWatch(threading.Event(), threading.Event())

    def run() -> None:
        answered = time.monotonic()
        while not watch.ended.wait(5):
            try:
                httpx.get(f"{api}/health", timeout=5)  # any status is an answer (401 too)
                answered = time.monotonic()
            except httpx.TransportError:
                if time.monotonic() - answered > gone_after:
                    break
        else:
            return  # serving ended by itself
        watch.gone.set()
        os.kill(os.getpid(), signal.SIGINT)
        if not watch.ended.wait(grace):
            sys.stderr.write(f"error: {lost_line(api)}\n")
            sys.stderr.flush()
            os._exit(1)

    threading.Thread(target=run, name="prefect-server-watch", daemon=True).start()
    return watch


def lost_line(api: str) -> str:
    return (
        f"lost the Prefect server at PREFECT_API_URL={api}: it stopped answering, so the "
        "schedule stopped. Runs that come due meanwhile wait on the server (state Late) and "
        "run once 'variants schedule' serves again: "
        f"{start_server_hint(api)}, then run this command again"
    )


def lost_prefect_server(exc: BaseException, api: str) -> PrefectServerError | None:
    """A clear error if ``exc`` (or what it wraps) says the Prefect server at ``api`` stopped
    answering while deployments were served; None for any other failure: a connection
    error, or the runner's poll loop giving up (``RuntimeError("Service exceeded error
    threshold.")``, after :data:`SERVER_POLL_FAILURES` failed polls, :func:`patient_runner`)."""
    import httpx

    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        error = pending.pop()
        if error is None or id(error) in seen:
            continue
        seen.add(id(error))
        if isinstance(error, httpx.TransportError) or str(error).startswith(
            "Service exceeded error threshold"
        ):
            return PrefectServerError(lost_line(api))
        pending += [error.__cause__, error.__context__]
        pending += getattr(error, "exceptions", [])  # an exception group of Prefect's tasks
    return None


def quiet_flow_runs(folder: Path) -> Path:
    """Prefect's logging configuration with :class:`~keras_variants.runtime.QuietConsole` on
    its console handler, written to ``folder``: the flow runs a served deployment starts are
    processes of their own, which set up logging from ``PREFECT_LOGGING_SETTINGS_PATH``, so
    without it each run prints Prefect's bookkeeping and full tracebacks."""
    import yaml  # Prefect's own dependency: its logging configuration is YAML
    from prefect.logging.configuration import DEFAULT_LOGGING_SETTINGS_PATH

    config = yaml.safe_load(DEFAULT_LOGGING_SETTINGS_PATH.read_text())
    config.setdefault("filters", {})["quiet"] = {"()": "keras_variants.runtime.QuietConsole"}
    config["handlers"]["console"]["filters"] = ["quiet"]
    path = folder / "logging.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def new_runner() -> Runner:
    """A Prefect runner to register the deployments with (``runner.add_deployment``, which
    returns the deployment's id), then to hand to :func:`serve_until_stopped`. Prefect's own
    ``serve`` registers what it is given once more, and registering deletes a deployment's
    trigger automations before creating them again: for that moment the deployment had no
    trigger, and an event then started nothing (a CI run found the trigger missing)."""
    from prefect.runner import Runner

    return Runner(pause_on_shutdown=True)  # as Prefect's serve


def serve_until_stopped(runner: Runner, api: str) -> None:
    """Serve the deployments registered with ``runner`` until Ctrl-C or SIGTERM: quietly
    (unless verbose or the user configured Prefect's logging), riding out a server restart,
    and with one error line (:class:`~keras_variants.errors.PrefectServerError`) when the
    Prefect server at ``api`` stops answering for good."""
    import asyncio

    from prefect.exceptions import TerminationSignal

    with tempfile.TemporaryDirectory(prefix="keras-variants-schedule-") as folder:
        # Read by the flow-run processes the runner starts; a user's own configuration wins.
        if not runtime.is_verbose() and "PREFECT_LOGGING_SETTINGS_PATH" not in os.environ:
            os.environ["PREFECT_LOGGING_SETTINGS_PATH"] = str(quiet_flow_runs(Path(folder)))
        patient_runner()
        server_watch = watch_server(api)
        try:
            asyncio.run(runner.start())
        except (KeyboardInterrupt, TerminationSignal):
            pass  # Ctrl-C, SIGTERM, or the watch below: serving ends
        except Exception as exc:
            lost = lost_prefect_server(exc, api)
            if lost is None:
                raise
            raise lost from exc
        finally:
            server_watch.ended.set()
    if server_watch.gone.is_set():  # serving ended because the watch interrupted it
        raise PrefectServerError(lost_line(api))
