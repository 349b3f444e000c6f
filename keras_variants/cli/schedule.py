"""``variants schedule``: serve the project's deployments against a Prefect server until
Ctrl-C: the training pipeline (on ``--cron``, and on ``--on-new-data``), and the notify
automations (``--notify``). The pieces live in :mod:`keras_variants.operations`; this file
wires them to the flows and says what it started."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from keras_variants.errors import ConfigError

if TYPE_CHECKING:
    from keras_variants.config.pipeline import PipelineConfig

WATCH_INTERVAL_S = 5.0  # a changed data file starts a run within a minute: well inside
START_SERVER = (
    "start one with 'prefect server start --host 127.0.0.1' and set "
    "PREFECT_API_URL=http://127.0.0.1:4200/api"
)


def check_options(cron: str | None, on_new_data: bool, notify: str | None) -> None:
    """Refuse, before anything starts, a schedule with nothing to run or a bad URL."""
    from keras_variants.operations.notify import check_url

    if cron is None and not on_new_data:
        raise ConfigError(
            "nothing to schedule: pass --cron EXPR and/or --on-new-data "
            "(see 'variants schedule --help')"
        )
    if notify is not None:
        check_url(notify)


def prefect_api() -> str:
    """The Prefect server's API URL; one line with the command that starts one otherwise."""
    import httpx
    from prefect.settings import get_current_settings

    api = get_current_settings().api.url
    if not api:
        raise ConfigError(f"schedules need a running Prefect server: {START_SERVER}")
    try:
        httpx.get(f"{api.rstrip('/')}/health", timeout=5).raise_for_status()
    except httpx.HTTPError:
        raise ConfigError(
            f"no Prefect server answers at PREFECT_API_URL={api}: {START_SERVER}"
        ) from None
    return api.rstrip("/")


def run_schedule(
    config: PipelineConfig,
    profile: str,
    name: str,
    cron: str | None,
    on_new_data: bool,
    notify: str | None,
) -> None:
    """Build and register the deployments, start the watchers and automations, then serve
    until Ctrl-C or SIGTERM."""
    from prefect import serve

    from flows.pipeline import pipeline, task_runner_for  # no TensorFlow here: lanes train
    from keras_variants.operations import deployments, events, watch
    from keras_variants.operations import notify as notifications
    from keras_variants.reporting.progress import mlflow_ui_for

    api = prefect_api()
    ui = api.removesuffix("/api")
    if on_new_data and config.data_dir is None:
        raise ConfigError(
            "--on-new-data watches the data folder: pass --data-dir or set VARIANTS_DATA_DIR"
        )
    data_dir = config.data_dir if on_new_data else None
    when = " and ".join(
        ([f"on '{cron}'"] if cron else [])
        + ([f"when a file in {data_dir} changes"] if data_dir else [])
    )
    training = deployments.training(
        # The config's task runner (max_parallel, runner), not the decorator's default.
        pipeline.with_options(task_runner=task_runner_for(config)),
        name,
        {"config": config.model_dump(mode="json")},
        cron,
        data_dir,
        f"keras-variants pipeline, profile {profile}, {when}",
    )
    served = [training]
    deployment_ids = {d.name: d.apply() for d in served}
    typer.echo(f"training '{name}' {when}; one run at a time, a run that comes due meanwhile waits")
    if notify is not None:
        watched = [notifications.Watched(deployment_ids[name], name)]
        notifications.install(notify, watched, ui, mlflow_ui_for(config.tracking_uri))
        typer.echo(f"notify: failed, crashed and promoted runs post a JSON message to {notify}")
        problem = notifications.unreachable(notify)
        if problem:
            typer.echo(
                f"notify: cannot reach {notify} now ({problem}); "
                "runs go on, messages to it are lost"
            )
    watchers = []
    if data_dir is not None:

        def data_changed(files: list[str], digests: dict[str, str]) -> None:
            typer.echo(f"data changed: {', '.join(files)}; training run requested")
            events.emit_folder_event(
                events.DATA_CHANGED, "data", data_dir, {"files": files, "sha256": digests}
            )

        watchers.append(watch.data_watcher(data_dir, WATCH_INTERVAL_S, data_changed))
    typer.echo(f"Prefect UI: {ui}/deployments; stop with Ctrl-C")
    for watcher in watchers:
        watcher.start()
    try:
        serve(*served, print_starting_message=False)
    finally:
        for watcher in watchers:
            watcher.stop()
    typer.echo("schedule stopped")
