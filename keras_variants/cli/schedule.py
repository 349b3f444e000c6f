"""``variants schedule``: serve the project's deployments against a Prefect server until
Ctrl-C: the training pipeline (``--cron``, ``--on-new-data``), the scoring of an inbox
(``--score-inbox DIR --model NAME``), the guard of a champion set by hand
(``--guard-champion URL``) and the notify automations (``--notify``). The options
become a :class:`~keras_variants.operations.plan.Plan`; :mod:`flows.schedule` serves it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from keras_variants import runtime
from keras_variants.cli import options
from keras_variants.operations.plan import Plan, check_plan


@options.with_selection
def schedule(
    ctx: typer.Context,
    selection: options.Selection,
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
    guard_champion: Annotated[
        str | None,
        typer.Option(
            "--guard-champion",
            help="Check a 'champion' set by hand in MLflow as the gate checks a challenger, "
            "and revert it unless it stands: MLflow's webhook posts to this URL "
            "(http://HOST:PORT/mlflow-webhook, where the receiver listens), signed with "
            "$VARIANTS_WEBHOOK_SECRET; needs MLflow's tracking server.",
        ),
    ] = None,
    name: Annotated[str, typer.Option("--name", help="Training deployment's name.")] = "scheduled",
) -> None:
    """Serve the project's deployments against a Prefect server, until Ctrl-C.

    It needs a running Prefect server: see docs/schedules.md."""
    plan = Plan(name, cron, on_new_data, score_inbox, model, notify, guard_champion)
    check_plan(plan)
    config = selection.config()
    if plan.trains or plan.guard:
        options.check_data(ctx, config)
    runtime.start_prefect(early_server=False)
    from flows.schedule import run_schedule

    run_schedule(config, plan, typer.echo)
