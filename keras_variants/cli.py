"""The ``variants`` command line: builds a typed config from options and runs a flow."""

from __future__ import annotations

import contextlib
import gc
import os
import sys
import threading
from pathlib import Path
from typing import Annotated

import typer

from keras_variants.errors import VariantsError, disk_full

app = typer.Typer(
    help="Train, track and compare the Keras lecture's model variants.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def _commands() -> None:
    """Train, track and compare the Keras lecture's model variants."""


DataDirOption = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        envvar="VARIANTS_DATA_DIR",
        help="Folder with mnist.npz and imdb.npz in the Keras layout "
        "(default: Keras's download, which needs internet).",
        file_okay=False,
    ),
]
ProfileOption = Annotated[
    str, typer.Option("--profile", help="Named settings: 'full' (the lecture's) or 'smoke'.")
]
TrackingOption = Annotated[
    str | None,
    typer.Option(
        "--tracking-uri",
        envvar="MLFLOW_TRACKING_URI",
        help="MLflow tracking store (default: sqlite mlflow.db in the current directory).",
    ),
]
VariantsOption = Annotated[
    str | None,
    typer.Option("--variants", help="Comma-separated variant names (default: all six)."),
]
SeedOption = Annotated[int, typer.Option("--seed", help="Seed for weights, shuffling, splits.")]


def _prepare_environment() -> None:
    """Offline-friendly defaults for the libraries, set when a command runs, not on import."""
    _return_large_buffers_to_the_os()
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # Prefect waits 20 s for its temporary server, then starts another one and leaves the
    # first running; two runs starting at once on two cores can need longer than that.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    # Bounded retries against an MLflow server, then a clear failure (defaults wait minutes).
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")


def _start_prefect_server_early() -> threading.Thread | None:
    """Start Prefect's temporary server in the background while TensorFlow imports.

    Only when no server is configured. The caller joins the thread before the first flow
    call, which then finds the server already up instead of waiting ~10 s for it.
    """
    from prefect.settings import get_current_settings

    settings = get_current_settings()
    if settings.api.url or not settings.server.ephemeral.enabled:
        return None
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()

    def start() -> None:
        try:
            server.start()
        except Exception:  # the flow call retries; never leave this attempt's process behind
            if server.server_process is not None:
                server.server_process.kill()
            raise

    thread = threading.Thread(target=start, daemon=True)
    thread.start()
    return thread


def _return_large_buffers_to_the_os() -> None:
    """Serve allocations over 128 KiB from mmap, always (glibc only).

    Per-batch input tensors are tens of MB. glibc raises its mmap threshold after such a
    buffer is freed, so later ones land in per-thread heaps that never shrink: resident
    memory then grows by ~70 MB per epoch. A fixed threshold keeps it flat.
    """
    import ctypes
    import ctypes.util

    libc_name = ctypes.util.find_library("c")
    if sys.platform.startswith("linux") and libc_name:
        m_mmap_threshold = -3
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(libc_name).mallopt(m_mmap_threshold, 128 * 1024)


def _config(profile: str, data_dir: Path | None, tracking_uri: str | None, **overrides):
    from keras_variants.config import build_config

    try:
        return build_config(
            profile=profile, data_dir=data_dir, tracking_uri=tracking_uri, **overrides
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc


@app.command()
def validate(
    data_dir: DataDirOption = None,
    profile: ProfileOption = "full",
) -> None:
    """Ingest MNIST and IMDb and check them with Great Expectations; no training."""
    _prepare_environment()
    server = _start_prefect_server_early()
    from flows.validate import validate_data

    if server:
        server.join()
    config = _config(profile, data_dir, None)
    summaries = validate_data(config)
    for name, summary in summaries.items():
        typer.echo(
            f"{name}: OK, {summary['expectations']} expectations passed; "
            f"{summary['train_rows']} train / {summary['test_rows']} test rows, "
            f"classes {summary['classes']}"
        )
        for file, digest in summary["fingerprints"].items():
            typer.echo(f"  {file} sha256 {digest}")
    typer.echo(f"Great Expectations results: {config.reports_dir / 'validation'}")


@app.command()
def run(
    data_dir: DataDirOption = None,
    profile: ProfileOption = "full",
    variants: VariantsOption = None,
    tracking_uri: TrackingOption = None,
    seed: SeedOption = 0,
    runner: Annotated[
        str, typer.Option("--runner", help="Run variant tasks on 'threads' here or on 'dask'.")
    ] = "threads",
    dask_address: Annotated[
        str | None,
        typer.Option(
            "--dask-address", help="Dask scheduler tcp://HOST:PORT (default: a local cluster)."
        ),
    ] = None,
    margin: Annotated[
        float, typer.Option("--margin", help="Test accuracy a challenger must gain to promote.")
    ] = 0.0,
    max_parallel: Annotated[
        int, typer.Option("--max-parallel", min=1, help="Variants trained at the same time.")
    ] = 2,
) -> None:
    """Validate the data, then train, evaluate and track every variant in MLflow."""
    _prepare_environment()
    server = _start_prefect_server_early()
    from flows.pipeline import run_pipeline

    if server:
        server.join()
    overrides = _variant_overrides(variants, seed) | {
        "runner": runner,
        "dask_address": dask_address,
        "promotion_margin": margin,
        "max_parallel": max_parallel,
    }
    config = _config(profile, data_dir, tracking_uri, **overrides)
    from prefect.exceptions import TerminationSignal

    from keras_variants.interrupts import install_signal_handlers

    install_signal_handlers()
    try:
        result = run_pipeline(config)
    except (KeyboardInterrupt, TerminationSignal):
        typer.secho("stopped: runs ended KILLED, nothing registered", err=True)
        raise typer.Exit(code=130) from None
    typer.echo(f"{'variant':<14} {'test acc':>9} {'test loss':>10} {'best epoch':>11}  run id")
    for name, outcome in result.variants.items():
        metrics = outcome.test_metrics
        typer.echo(
            f"{name:<14} {metrics['test/accuracy']:>9.4f} {metrics['test/loss']:>10.4f} "
            f"{outcome.validation_loss_min_epoch:>11}  {outcome.run_id}"
        )
    for decision in result.decisions:
        typer.echo(decision.sentence())
    typer.echo(f"report: {result.report}")
    typer.echo(f"MLflow store: {config.tracking_uri}")


@app.command()
def report(
    run_id: Annotated[
        str | None,
        typer.Option(
            "--run-id",
            help="A parent (or child) run of the pipeline run to report "
            "on (default: the latest finished one).",
        ),
    ] = None,
    tracking_uri: TrackingOption = None,
) -> None:
    """Rebuild the comparison report of a past pipeline run from MLflow."""
    _prepare_environment()
    from flows.report import comparison_report

    config = _config("full", None, tracking_uri)
    path = comparison_report(config, run_id)
    typer.echo(f"report: {path}")


@app.command()
def promote(
    model: Annotated[
        str, typer.Option("--model", help="Registered model: mnist-classifier or imdb-sentiment.")
    ],
    version: Annotated[
        str | None,
        typer.Option("--version", help="Version to promote (default: the 'challenger')."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Run the gate and report, change nothing.")
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Promote even if it does not beat the champion.")
    ] = False,
    rollback: Annotated[
        bool, typer.Option("--rollback", help="Make the 'previous' version champion again.")
    ] = False,
    margin: Annotated[
        float, typer.Option("--margin", help="Test accuracy the version must gain.")
    ] = 0.0,
    data_dir: DataDirOption = None,
    profile: ProfileOption = "full",
    tracking_uri: TrackingOption = None,
    seed: SeedOption = 0,
) -> None:
    """Promote a registered version to champion through the same gate, or roll back."""
    _prepare_environment()
    from keras_variants import registry
    from keras_variants.datasets import load_dataset
    from keras_variants.store import client_for

    config = _config(profile, data_dir, tracking_uri, seed=seed)
    datasets = {v: k for k, v in registry.REGISTERED_MODELS.items()}
    if model not in datasets:
        raise typer.BadParameter(f"unknown model {model!r}; choose from {', '.join(datasets)}")
    client = client_for(config)
    if rollback:
        typer.echo(registry.rollback(client, config.tracking_uri, model).sentence())
        return
    data = load_dataset(datasets[model], config.data_dir, config.num_words)
    decision = registry.gate(
        client, config, data, version=version, margin=margin, dry_run=dry_run, force=force
    )
    typer.echo(("[dry run] " if dry_run else "") + decision.sentence())
    if not decision.promoted and not dry_run:
        raise typer.Exit(code=3)


@app.command()
def predict(
    inputs: Annotated[
        list[str],
        typer.Argument(
            help="Review texts (imdb-sentiment) or image files (mnist-classifier).",
            show_default=False,
        ),
    ],
    model: Annotated[
        str, typer.Option("--model", help="Registered model: imdb-sentiment or mnist-classifier.")
    ],
    version: Annotated[
        str | None, typer.Option("--version", help="Version to ask (default: the champion).")
    ] = None,
    tracking_uri: TrackingOption = None,
) -> None:
    """Ask a registered model, as it is served: one line per input with label and probability."""
    _prepare_environment()
    from keras_variants import serving
    from keras_variants.store import client_for

    config = _config("full", None, tracking_uri)
    for line in serving.predict_lines(client_for(config), model, inputs, version):
        typer.echo(line)


@app.command()
def serve(
    cron: Annotated[
        str, typer.Option("--cron", help='Schedule, e.g. "0 3 * * *" for 03:00 every day.')
    ],
    name: Annotated[str, typer.Option("--name", help="Deployment name.")] = "scheduled",
    data_dir: DataDirOption = None,
    profile: ProfileOption = "full",
    variants: VariantsOption = None,
    tracking_uri: TrackingOption = None,
    seed: SeedOption = 0,
) -> None:
    """Serve the pipeline as a Prefect deployment on a cron schedule (needs a Prefect
    server: see the README). Runs until stopped with Ctrl-C."""
    _prepare_environment()
    from prefect.settings import get_current_settings

    if not get_current_settings().api.url:
        raise typer.BadParameter(
            "schedules need a running Prefect server: start one with "
            "'prefect server start --host 127.0.0.1' and set "
            "PREFECT_API_URL=http://127.0.0.1:4200/api",
            param_hint="PREFECT_API_URL",
        )
    from flows.pipeline import pipeline

    config = _config(profile, data_dir, tracking_uri, **_variant_overrides(variants, seed))
    pipeline.serve(
        name=name,
        cron=cron,
        parameters={"config": config.model_dump(mode="json")},
        description=f"keras-variants pipeline, profile {profile}, on '{cron}'",
    )


def _variant_overrides(variants: str | None, seed: int) -> dict[str, object]:
    overrides: dict[str, object] = {"seed": seed}
    if variants:
        overrides["variants"] = tuple(v.strip() for v in variants.split(",") if v.strip())
    return overrides


def main() -> None:
    """Console entry point: user errors print one clear message and exit 1."""
    try:
        app()
    except VariantsError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        sys.exit(1)
    except OSError as exc:
        if not disk_full(exc):
            raise
        where = exc.filename2 or exc.filename or "a file"
        typer.secho(f"error: no space left on the device writing {where}; free space and run "
                    "again", fg=typer.colors.RED, err=True)  # fmt: skip
        sys.exit(1)
    finally:
        # Everything alive now dies with the process: without this, the interpreter's last
        # garbage collections walk millions of TensorFlow/MLflow/Prefect objects (~5 s).
        gc.freeze()
