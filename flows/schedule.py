"""The project's flows as deployments served against a Prefect server until stopped: the
training pipeline (on a cron, on new data), the scoring of an inbox, the guard's review of
a champion set by hand (with the receiver MLflow's webhook posts to), the watchers that
emit their events and the notify automations. ``variants schedule`` parses its options into
a :class:`~keras_variants.operations.plan.Plan` and calls :func:`run_schedule`; what each
piece does lives in :mod:`keras_variants.operations`."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from keras_variants.errors import ConfigError
from keras_variants.operations.plan import Plan

if TYPE_CHECKING:
    from prefect.deployments.runner import RunnerDeployment

    from keras_variants.config.pipeline import PipelineConfig
    from keras_variants.operations.watch import Watcher

Say = Callable[[str], None]  # a line for the user
WATCH_INTERVAL_S = 5.0  # a changed data file starts a run within a minute: well inside


def run_schedule(config: PipelineConfig, plan: Plan, say: Say = print) -> None:
    """Build and register the deployments, start the watchers and automations, then serve
    until Ctrl-C or SIGTERM; ``say`` prints what was started."""
    from keras_variants.operations import events, watch
    from keras_variants.operations import notify as notifications
    from keras_variants.operations.runner import new_runner, prefect_api, serve_until_stopped
    from keras_variants.registry.versions import REGISTERED_MODELS  # loads MLflow
    from keras_variants.tracking.ui_links import mlflow_ui_for

    if plan.model is not None and plan.model not in REGISTERED_MODELS.values():
        models = ", ".join(REGISTERED_MODELS.values())
        raise ConfigError(f"--model: unknown model {plan.model!r}; choose from {models}")
    api = prefect_api()
    ui = api.removesuffix("/api")
    served: list[tuple[RunnerDeployment, str | None]] = []  # with the model it scores
    guards: list[RunnerDeployment] = []
    watchers: list[Watcher] = []
    if plan.trains:
        deployment, watcher = _training(config, plan, say)
        served.append((deployment, None))
        watchers += [watcher] if watcher else []
    if plan.inbox is not None:
        served.append((_scoring(config, plan, say), plan.model))

        def waiting(names: list[str]) -> None:
            say(f"inbox: {', '.join(names)} waiting; scoring run requested")
            payload = {"files": names, "model": plan.model}
            events.emit_folder_event(events.INBOX_WAITING, "inbox", inbox, payload)

        inbox = plan.inbox.resolve()
        watchers.append(watch.inbox_watcher(inbox, WATCH_INTERVAL_S, waiting))
    if plan.guard is not None:
        guards.append(_guard_deployment(config, plan, say))
    runner = new_runner()  # registers each deployment once, with its triggers
    watched = [notifications.Watched(runner.add_deployment(d), d.name, m) for d, m in served]
    for guard in guards:
        watched.append(notifications.Watched(runner.add_deployment(guard), guard.name, guards=True))
    if plan.notify is not None:
        notifications.install(plan.notify, watched, ui, mlflow_ui_for(config.tracking_uri))
        say(f"notify: failed or crashed runs, promotions and drift post JSON to {plan.notify}")
        problem = notifications.unreachable(plan.notify)
        if problem:
            say(
                f"notify: cannot reach {plan.notify} now ({problem}); "
                "runs go on, messages to it are lost"
            )
    stop_receiver = _guard_receiver(config, plan, say) if plan.guard else None
    say(f"Prefect UI: {ui}/deployments; stop with Ctrl-C")
    for watcher in watchers:
        watcher.start()
    try:
        serve_until_stopped(runner, api)
    finally:
        for watcher in watchers:
            watcher.stop()
        if stop_receiver is not None:
            stop_receiver()


def _training(
    config: PipelineConfig, plan: Plan, say: Say
) -> tuple[RunnerDeployment, Watcher | None]:
    """The training deployment, and the data watcher when it runs on new data."""
    from flows.deployed import train  # no TensorFlow here: lanes train
    from keras_variants.operations import deployments, events, watch
    from keras_variants.operations.declarations import TRAINING, declared, run_parameters

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
        train, declared()[TRAINING], plan.name, run_parameters(config), plan.cron, data_dir
    )
    say(f"training '{plan.name}' {when}; one run at a time, one that comes due waits")
    if data_dir is None:
        return deployment, None

    def changed(files: list[str], digests: dict[str, str]) -> None:
        say(f"data changed: {', '.join(files)}; training run requested")
        payload = {"files": files, "sha256": digests}
        events.emit_folder_event(events.DATA_CHANGED, "data", data_dir, payload)

    return deployment, watch.data_watcher(data_dir, WATCH_INTERVAL_S, changed)


def _scoring(config: PipelineConfig, plan: Plan, say: Say) -> RunnerDeployment:
    """The scoring deployment over the inbox; inputs a stopped run had taken go back."""
    from flows.deployed import inbox as score_inbox
    from keras_variants.operations import deployments, inbox
    from keras_variants.operations.declarations import SCORING, declared, run_parameters

    assert plan.inbox is not None and plan.model is not None
    folder = plan.inbox.resolve()
    returned = inbox.put_back(folder)
    if returned:
        say(f"inbox: {', '.join(returned)} back from a stopped run; scored once more")
    name = f"score-{plan.model}"
    say(
        f"scoring '{name}': what lands in {plan.inbox} with {plan.model}'s champion, "
        "results in scored/, inputs to done/ or failed/; one run at a time, later files wait"
    )
    parameters = {"inbox": str(folder), "model": plan.model, **run_parameters(config)}
    return deployments.scoring(score_inbox, declared()[SCORING], name, parameters, folder)


def _guard_deployment(config: PipelineConfig, plan: Plan, say: Say) -> RunnerDeployment:
    """The guard's deployment: a review of each champion move the receiver hands on."""
    from flows.guard import guard_champion
    from keras_variants.operations import deployments
    from keras_variants.operations.declarations import GUARD, declared, run_parameters

    if not config.tracking_uri.startswith(("http://", "https://")):
        raise ConfigError(
            "--guard-champion: MLflow sends webhooks from its tracking server only; point "
            "MLFLOW_TRACKING_URI (or --tracking-uri) at it, e.g. http://127.0.0.1:5000"
        )
    if config.data_dir is None:
        raise ConfigError(
            "--guard-champion scores a champion set by hand on the test data: pass "
            "--data-dir or set VARIANTS_DATA_DIR"
        )
    say(
        "guard: a 'champion' set by hand in MLflow is checked as the gate checks a "
        "challenger, against the champion on record, and reverted unless it stands"
    )
    return deployments.guard(
        guard_champion,
        declared()[GUARD],
        run_parameters(config),
        f"(Its store: {config.tracking_uri}.)",
    )


def _guard_receiver(config: PipelineConfig, plan: Plan, say: Say) -> Callable[[], None]:
    """The receiver at ``plan.guard``, MLflow's webhook posting to it; what stops it."""
    import os

    from keras_variants.operations import mlflow_webhooks
    from keras_variants.operations.guard_receiver import start_guard
    from keras_variants.tracking.store import client_for

    assert plan.guard is not None
    secret = os.environ[mlflow_webhooks.SECRET_ENV].strip()
    return start_guard(client_for(config), plan.guard, secret, say)
