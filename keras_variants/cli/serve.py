"""``variants serve``: a registered version behind the project's scoring server
(:mod:`keras_variants.serving.server`) on uvicorn, until Ctrl-C or SIGTERM.

The options are checked before TensorFlow loads; then the version is loaded through the
registry and verified, and :mod:`keras_variants.serving.run` serves it: every request is
one access-log line on stderr. Served by an alias (``champion`` by default), it follows the
alias (:mod:`keras_variants.serving.follow`): a new version is loaded and verified beside
the old one and switched to at once.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from keras_variants import runtime
from keras_variants.cli.options import TrackingOption, check_model_choice
from keras_variants.serving import follow as serving_follow
from keras_variants.serving import limits as serving_limits

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

    from keras_variants.serving.follow import Follower
    from keras_variants.serving.server import ScoringApp, Served


def serve(
    model: Annotated[
        str, typer.Option("--model", help="Registered model: imdb-sentiment or mnist-classifier.")
    ],
    alias: Annotated[
        str | None, typer.Option("--alias", help="Alias of the version (default: champion).")
    ] = None,
    version: Annotated[
        str | None, typer.Option("--version", help="Version number, instead of an alias.")
    ] = None,
    host: Annotated[str, typer.Option("--host", help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Port.")] = 5001,
    max_request_mb: Annotated[
        float,
        typer.Option("--max-request-mb", min=0.001, help="Largest request body, in MiB."),
    ] = float(serving_limits.MAX_REQUEST_MIB),
    max_concurrent: Annotated[
        int | None,
        typer.Option(
            "--max-concurrent",
            min=1,
            help="Requests predicted at once; more wait (--max-queue) (default: the cores).",
        ),
    ] = None,
    max_queue: Annotated[
        int | None,
        typer.Option(
            "--max-queue",
            min=0,
            help="Requests that may wait for a worker besides those predicted; more get "
            "503 at once (default: the cores).",
        ),
    ] = None,
    max_cost: Annotated[
        int,
        typer.Option(
            "--max-cost",
            min=1,
            help="Model passes per request: inputs x (1 + mc_samples); the model itself takes "
            f"up to {serving_limits.MAX_INPUTS:,} inputs and mc_samples up to "
            f"{serving_limits.MAX_MC_SAMPLES}.",
        ),
    ] = serving_limits.MAX_COST,
    timeout: Annotated[
        float,
        typer.Option("--timeout", min=0.01, help="Seconds per request; past it the work stops."),
    ] = serving_limits.TIMEOUT_S,
    token_env: Annotated[
        str | None,
        typer.Option(
            "--token-env",
            help="Environment variable holding a token that /invocations and /version "
            "require as 'Authorization: Bearer <token>'.",
        ),
    ] = None,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow/--no-follow",
            help="Served by an alias: switch to the version it names when it moves (loaded "
            "and verified beside the old one first); --no-follow keeps the version it started "
            "with. A --version is never followed.",
        ),
    ] = True,
    follow_every: Annotated[
        float,
        typer.Option("--follow-every", min=0.1, help="Seconds between looks at the alias."),
    ] = serving_follow.POLL_S,
    log_predictions: Annotated[
        Path | None,
        typer.Option(
            "--log-predictions",
            help="Folder for a compact record per input (statistics, answer, latency; never "
            "the input itself), rotated by size.",
            file_okay=False,
        ),
    ] = None,
    tracking_uri: TrackingOption = None,
) -> None:
    """Serve a registered model over HTTP (MLflow's scoring protocol), every request bounded."""
    check_model_choice(model, alias, version)
    token = _token(token_env)
    limits = serving_limits.Limits(
        max_request_bytes=int(max_request_mb * 2**20),
        max_cost=max_cost,
        max_concurrent=max_concurrent or serving_limits.cores(),
        max_queue=serving_limits.cores() if max_queue is None else max_queue,
        timeout_s=timeout,
    )
    client, number = _version(model, alias, version, tracking_uri)
    signal.signal(signal.SIGTERM, _stop)  # uvicorn's own handler takes over once it runs
    runtime.import_tensorflow()
    from keras_variants.serving.run import run_server

    load = partial(_served, client, model, log_predictions)
    app = _app(load(number), limits, token)
    follower = None
    if follow and version is None:
        follower = _follower(app, client, model, alias or "champion", load, follow_every)
    following = f"; follows '{follower.alias}' every {follow_every:g} s" if follower else ""
    typer.echo(
        f"serving {model} v{number} on http://{host}:{port}/invocations "
        f"(body up to {max_request_mb:g} MiB, {limits.max_concurrent} at once and "
        f"{limits.max_queue} waiting, cost up to {max_cost:,}, {timeout:g} s each"
        f"{', token required' if token else ''}){following}; Ctrl-C stops",
        err=True,
    )
    if not run_server(app, host, port, follower):
        raise typer.BadParameter(f"cannot listen on {host}:{port}", param_hint="--port")


def _version(
    model: str, alias: str | None, version: str | None, tracking_uri: str | None
) -> tuple[MlflowClient, str]:
    """The store's client and the version to serve; one line when either is missing."""
    from keras_variants.cli.preflight import check_store_exists
    from keras_variants.config.pipeline import build_config
    from keras_variants.registry.loading import resolve_version
    from keras_variants.tracking.store import client_for

    config = build_config(profile="full", data_dir=None, tracking_uri=tracking_uri)
    check_store_exists(config.tracking_uri)
    client = client_for(config)
    return client, resolve_version(client, model, alias, version)


def _served(client: MlflowClient, model: str, log_predictions: Path | None, number: str) -> Served:
    """A version loaded once its files are verified, answering once already, with its
    prediction log: what the app serves, at the start and after each switch."""
    from keras_variants.registry.loading import load_version, logged_model_id
    from keras_variants.serving.answers import served_model_of
    from keras_variants.serving.server import Served, ServedVersion, pyfunc_predictor

    python_model = served_model_of(load_version(client, model, number))
    served = ServedVersion(model, number, logged_model_id(client, model, number))
    sink = None
    if log_predictions is not None:
        from keras_variants.monitoring.observe import input_features
        from keras_variants.serving.prediction_log import PredictionLog

        sink = PredictionLog(log_predictions, partial(input_features, python_model)).write
    return Served(pyfunc_predictor(python_model), served, sink)


def _app(served: Served, limits: serving_limits.Limits, token: str | None) -> ScoringApp:
    from keras_variants.serving.server import ScoringApp

    return ScoringApp(served.predictor, served.version, limits, token, served.sink)


def _follower(
    app: ScoringApp,
    client: MlflowClient,
    model: str,
    alias: str,
    load: Callable[[str], Served],
    every: float,
) -> Follower:
    """The thread that switches ``app`` to the version ``alias`` names when it moves."""
    from keras_variants.registry.loading import resolve_version
    from keras_variants.serving.follow import Follower

    return Follower(app, alias, partial(resolve_version, client, model, alias), load, every)


def _token(variable: str | None) -> str | None:
    if variable is None:
        return None
    value = os.environ.get(variable, "").strip()
    if not value:
        raise typer.BadParameter(
            f"the environment variable {variable} is not set or empty; set it to the token",
            param_hint="--token-env",
        )
    return value


def _stop(signum: int, frame: object) -> None:
    """SIGTERM: exit quietly (0). uvicorn re-raises the signal after its graceful stop."""
    typer.echo("stopped", err=True)
    sys.exit(0)
