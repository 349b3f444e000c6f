"""``variants score``: score a folder of images, a .txt file or a table with a registered
version, as the ``score`` flow; print one summary line and where the files are."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from keras_variants import prefect_server, runtime
from keras_variants.cli.options import TrackingOption, check_model_choice
from keras_variants.data.layout import IMAGE_LAYOUT

# With --fail-on-drift, when drift is detected or could not be checked (as `variants promote`
# exits 3 when it refuses).
DRIFT_EXIT_CODE = 3


def score(
    input: Annotated[
        Path,
        typer.Argument(
            help="A folder of images, a .txt file (one review per line), or a .csv / "
            ".parquet file with a 'text' or 'image' column (and optionally 'label', 'id'). "
            f"Digits (mnist-classifier): {IMAGE_LAYOUT}.",
            show_default=False,
        ),
    ],
    model: Annotated[
        str, typer.Option("--model", help="Registered model: imdb-sentiment or mnist-classifier.")
    ],
    alias: Annotated[
        str | None,
        typer.Option("--alias", help="Score with the version of this alias (default: champion)."),
    ] = None,
    version: Annotated[
        str | None, typer.Option("--version", help="Score with this version number instead.")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="New folder for the files (default: scores/<run id>/)."),
    ] = None,
    fail_on_drift: Annotated[
        bool,
        typer.Option(
            "--fail-on-drift",
            help="Exit with code 3 when drift is detected, or when it could not be checked.",
        ),
    ] = False,
    tracking_uri: TrackingOption = None,
) -> None:
    """Score new data with a registered version, check it for drift, and track it in MLflow."""
    from keras_variants.cli.preflight import check_store_exists
    from keras_variants.config.pipeline import build_config
    from keras_variants.scoring.inputs import input_kind

    # A mistake in the input or the store answers in a moment, before MLflow, pandas,
    # Prefect or TensorFlow is imported: what the input holds (a .txt decoded whole),
    # whatever the model, and whether the store is there.
    if not input.exists():
        raise typer.BadParameter(f"{input}: no such file or folder", param_hint="INPUT")
    input_kind(input)
    config = build_config(tracking_uri=tracking_uri)
    check_store_exists(config.tracking_uri)
    check_model_choice(model, alias, version)  # MLflow is imported from here on

    from keras_variants.registry.loading import resolve_version
    from keras_variants.scoring.inputs import check_input
    from keras_variants.scoring.outputs import check_destination
    from keras_variants.scoring.request import ScoringRequest
    from keras_variants.tracking.store import client_for

    if out is not None:
        check_destination(out)
    request = ScoringRequest(input=input, model=model, alias=alias, version=version, out=out)
    # Then, before Prefect and TensorFlow are imported: whether the input holds what the
    # model takes, and whether the version exists.
    check_input(input, request.dataset, model)
    resolve_version(client_for(config), model, alias, version)
    server = runtime.start_prefect()
    if not runtime.is_verbose():  # the summary line is the whole story; no "Beginning flow run"
        logging.getLogger("prefect.flow_runs").setLevel(logging.WARNING)
    runtime.import_tensorflow()  # the model scores in this process, while the server starts
    from flows.score import score as score_flow

    server.wait()
    try:
        result = score_flow(config, request)
    finally:
        prefect_server.stop()
    typer.echo(result.line)
    typer.echo(f"files: {result.folder}/ (MLflow run {result.run_id})")
    drift = result.summary["drift"]
    if fail_on_drift and not drift.get("checked", False):
        typer.echo(f"error: drift could not be checked: {drift.get('reason')}", err=True)
        raise typer.Exit(code=DRIFT_EXIT_CODE)
    if fail_on_drift and result.drift_detected:
        raise typer.Exit(code=DRIFT_EXIT_CODE)
