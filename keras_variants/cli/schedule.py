"""``variants schedule``: serve the project's deployments against a Prefect server until
Ctrl-C: the training pipeline (``--cron``, ``--on-new-data``), the scoring of an inbox
(``--score-inbox DIR --model NAME``) and the notify automations (``--notify``). The pieces
live in :mod:`keras_variants.operations`; this file wires them to the flows and says what
it started."""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated
from urllib.parse import urlsplit

import typer

from keras_variants import runtime
from keras_variants.cli import options
from keras_variants.errors import ConfigError, PrefectServerError

if TYPE_CHECKING:
    from prefect.deployments.runner import RunnerDeployment

    from keras_variants.config.pipeline import PipelineConfig
    from keras_variants.operations.watch import Watcher

WATCH_INTERVAL_S = 5.0  # a changed data file starts a run within a minute: well inside
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


def schedule(
    ctx: typer.Context,
    cron: Annotated[
        str | None,
        typer.Option("--cron", help='Train on a schedule, e.g. "0 3 * * *" for 03:00 every day.'),
    ] = None,
    on_new_data: Annotated[
        bool,
        typer.Option(
            "--on-new-data",
            help="Also train when a file in the data folder changes (a new SHA-256).",
        ),
    ] = False,
    score_inbox: Annotated[
        Path | None,
        typer.Option(
            "--score-inbox",
            help="Score every file or folder of images that lands in DIR with --model's "
            "champion (results in DIR/scored/, inputs to DIR/done/ or DIR/failed/).",
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model", help="Model for --score-inbox: imdb-sentiment or mnist-classifier."
        ),
    ] = None,
    notify: Annotated[
        str | None,
        typer.Option(
            "--notify",
            help="POST a JSON message to this URL when a run fails or crashes, "
            "a scoring finds drift, or a model is promoted.",
        ),
    ] = None,
    name: Annotated[str, typer.Option("--name", help="Training deployment's name.")] = "scheduled",
    data_dir: options.DataDirOption = None,
    profile: options.ProfileOption = "full",
    variants: options.VariantsOption = None,
    tracking_uri: options.TrackingOption = None,
    seed: options.SeedOption = 0,
    seeds: options.SeedsOption = None,
    sweep: options.SetOption = None,
    study: options.StudyOption = None,
) -> None:
    """Serve the project's deployments against a Prefect server, until Ctrl-C.

    It needs a running Prefect server: see the README's "Scheduled runs"."""
    plan = Plan(name, cron, on_new_data, score_inbox, model, notify)
    check_plan(plan)
    overrides = options.study_overrides(variants, seed, seeds, sweep, study)
    config = options.build(profile, data_dir, tracking_uri, **overrides)
    if plan.trains:
        options.check_data(ctx, config)
    runtime.start_prefect(early_server=False)
    run_schedule(config, profile, plan)


@dataclass(frozen=True)
class Plan:
    """What to serve, as the user asked for it."""

    name: str
    cron: str | None = None
    on_new_data: bool = False
    inbox: Path | None = None
    model: str | None = None
    notify: str | None = None

    @property
    def trains(self) -> bool:
        return self.cron is not None or self.on_new_data


def check_plan(plan: Plan) -> None:
    """Refuse, before anything starts, a schedule with nothing to run, a half-given inbox,
    or a bad URL."""
    from keras_variants.operations.inbox import check_inbox
    from keras_variants.operations.notify import check_url

    if not plan.trains and plan.inbox is None:
        raise ConfigError(
            "nothing to schedule: pass --cron EXPR, --on-new-data and/or "
            "--score-inbox DIR --model NAME (see 'variants schedule --help')"
        )
    if (plan.inbox is None) != (plan.model is None):
        raise ConfigError("--score-inbox DIR and --model NAME go together: pass both")
    if plan.inbox is not None:
        check_inbox(plan.inbox)
    if plan.notify is not None:
        check_url(plan.notify)


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
    level; the runner passes neither, so they apply to it alone in this process."""
    import inspect

    from prefect.utilities import services

    loop = services.critical_service_loop
    parameters = [
        p for p in inspect.signature(loop).parameters.values() if p.default is not p.empty
    ]
    defaults = {p.name: p.default for p in parameters}
    if not {"consecutive", "printer"} <= defaults.keys() or len(parameters) != len(
        loop.__defaults__ or ()
    ):
        return  # another Prefect: leave its loop as it is
    defaults["consecutive"] = SERVER_POLL_FAILURES
    if not runtime.is_verbose():
        logger = logging.getLogger("prefect.runner")
        defaults["printer"] = lambda *parts: logger.debug(" ".join(map(str, parts)))
    loop.__defaults__ = tuple(defaults[p.name] for p in parameters)


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
            sys.stderr.write(f"error: {_lost_line(api)}\n")
            sys.stderr.flush()
            os._exit(1)

    threading.Thread(target=run, name="prefect-server-watch", daemon=True).start()
    return watch


def _lost_line(api: str) -> str:
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
            return PrefectServerError(_lost_line(api))
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


def run_schedule(config: PipelineConfig, profile: str, plan: Plan) -> None:
    """Build and register the deployments, start the watchers and automations, then serve
    until Ctrl-C or SIGTERM."""
    from prefect import serve

    from keras_variants.operations import events, watch
    from keras_variants.operations import notify as notifications
    from keras_variants.registry.versions import REGISTERED_MODELS  # loads MLflow
    from keras_variants.reporting.progress import mlflow_ui_for

    if plan.model is not None and plan.model not in REGISTERED_MODELS.values():
        models = ", ".join(REGISTERED_MODELS.values())
        raise ConfigError(f"--model: unknown model {plan.model!r}; choose from {models}")
    api = prefect_api()
    ui = api.removesuffix("/api")
    served: list[tuple[RunnerDeployment, str | None]] = []  # with the model it scores
    watchers: list[Watcher] = []
    if plan.trains:
        deployment, watcher = _training(config, profile, plan)
        served.append((deployment, None))
        watchers += [watcher] if watcher else []
    if plan.inbox is not None:
        served.append((_scoring(config, plan), plan.model))

        def waiting(names: list[str]) -> None:
            typer.echo(f"inbox: {', '.join(names)} waiting; scoring run requested")
            events.emit_folder_event(events.INBOX_WAITING, "inbox", inbox, {"files": names})

        inbox = plan.inbox
        watchers.append(watch.inbox_watcher(inbox, WATCH_INTERVAL_S, waiting))
    watched = [notifications.Watched(d.apply(), d.name, model) for d, model in served]
    if plan.notify is not None:
        notifications.install(plan.notify, watched, ui, mlflow_ui_for(config.tracking_uri))
        typer.echo(
            f"notify: failed or crashed runs, promotions and drift post JSON to {plan.notify}"
        )
        problem = notifications.unreachable(plan.notify)
        if problem:
            typer.echo(
                f"notify: cannot reach {plan.notify} now ({problem}); "
                "runs go on, messages to it are lost"
            )
    typer.echo(f"Prefect UI: {ui}/deployments; stop with Ctrl-C")
    for watcher in watchers:
        watcher.start()
    with tempfile.TemporaryDirectory(prefix="keras-variants-schedule-") as folder:
        # Read by the flow-run processes serve starts; a user's own configuration wins.
        if not runtime.is_verbose() and "PREFECT_LOGGING_SETTINGS_PATH" not in os.environ:
            os.environ["PREFECT_LOGGING_SETTINGS_PATH"] = str(quiet_flow_runs(Path(folder)))
        patient_runner()
        server_watch = watch_server(api)
        try:
            serve(*(d for d, _ in served), print_starting_message=False)
        except KeyboardInterrupt:
            if not server_watch.gone.is_set():
                raise  # the user's Ctrl-C
        except Exception as exc:
            lost = lost_prefect_server(exc, api)
            if lost is None:
                raise
            raise lost from exc
        finally:
            server_watch.ended.set()
            for watcher in watchers:
                watcher.stop()
        if server_watch.gone.is_set():  # serving ended because the watch interrupted it
            raise PrefectServerError(_lost_line(api))


def _training(
    config: PipelineConfig, profile: str, plan: Plan
) -> tuple[RunnerDeployment, Watcher | None]:
    """The training deployment, and the data watcher when it runs on new data."""
    from flows.pipeline import pipeline, task_runner_for  # no TensorFlow here: lanes train
    from keras_variants.operations import deployments, events, watch

    if plan.on_new_data and config.data_dir is None:
        raise ConfigError(
            "--on-new-data watches the data folder: pass --data-dir or set VARIANTS_DATA_DIR"
        )
    data_dir = config.data_dir if plan.on_new_data else None
    when = " and ".join(
        ([f"on '{plan.cron}'"] if plan.cron else [])
        + ([f"when a file in {data_dir} changes"] if data_dir else [])
    )
    deployment = deployments.training(
        # The config's task runner (max_parallel, runner), not the decorator's default.
        pipeline.with_options(task_runner=task_runner_for(config)),
        plan.name,
        {"config": config.model_dump(mode="json")},
        plan.cron,
        data_dir,
        f"keras-variants pipeline, profile {profile}, {when}",
    )
    typer.echo(f"training '{plan.name}' {when}; one run at a time, one that comes due waits")
    if data_dir is None:
        return deployment, None

    def changed(files: list[str], digests: dict[str, str]) -> None:
        typer.echo(f"data changed: {', '.join(files)}; training run requested")
        payload = {"files": files, "sha256": digests}
        events.emit_folder_event(events.DATA_CHANGED, "data", data_dir, payload)

    return deployment, watch.data_watcher(data_dir, WATCH_INTERVAL_S, changed)


def _scoring(config: PipelineConfig, plan: Plan) -> RunnerDeployment:
    """The scoring deployment over the inbox; inputs a stopped run had taken go back."""
    from flows.inbox import score_inbox
    from keras_variants.operations import deployments, inbox

    assert plan.inbox is not None and plan.model is not None
    folder = plan.inbox.resolve()
    returned = inbox.put_back(folder)
    if returned:
        typer.echo(f"inbox: {', '.join(returned)} back from a stopped run; scored once more")
    name = f"score-{plan.model}"
    typer.echo(
        f"scoring '{name}': what lands in {plan.inbox} with {plan.model}'s champion, "
        "results in scored/, inputs to done/ or failed/; one run at a time, later files wait"
    )
    parameters = {
        "config": config.model_dump(mode="json"),
        "inbox": str(folder),
        "model": plan.model,
    }
    description = f"score what lands in {folder} with {plan.model}'s champion"
    return deployments.scoring(score_inbox, name, parameters, folder, description)
