"""``variants validate``, ``variants run`` and ``variants report``: the pipeline's commands,
and the lines a run ends with (its variants, the registry's decisions, where to look)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Annotated

import typer

from keras_variants import prefect_server, runtime
from keras_variants.cli import options
from keras_variants.errors import VariantsError

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

    from flows.pipeline import PipelineResult
    from keras_variants.config.pipeline import PipelineConfig


def validate(
    ctx: typer.Context,
    data_dir: options.DataDirOption = None,
    profile: options.ProfileOption = "full",
) -> None:
    """Ingest MNIST and IMDb and check them with Great Expectations; no training."""
    config = options.build(profile, data_dir, None)
    options.check_data(ctx, config, served=False)  # the checks need no word index
    server = runtime.start_prefect()
    from flows.validate import validate_data  # the checks encode samples in a lane process

    server.wait()
    try:
        summaries = validate_data(config)
    finally:
        prefect_server.stop()
    for name, summary in summaries.items():
        typer.echo(
            f"{name}: OK, {summary['expectations']} expectations passed; "
            f"{summary['train_rows']} train / {summary['test_rows']} test rows, "
            f"classes {summary['classes']}"
        )
        for file, digest in summary["fingerprints"].items():
            typer.echo(f"  {file} sha256 {digest}")
    typer.echo(f"Great Expectations results: {config.reports_dir / 'validation'}")


@options.with_selection
def run(
    ctx: typer.Context,
    selection: options.Selection,
    runner: Annotated[
        str,
        typer.Option(
            "--runner",
            help="Where training runs: 'processes' (lean lane processes, the default), "
            "'threads' of this process, or 'dask'.",
        ),
    ] = "processes",
    dask_address: Annotated[
        str | None,
        typer.Option(
            "--dask-address", help="Dask scheduler tcp://HOST:PORT (default: a local cluster)."
        ),
    ] = None,
    margin: Annotated[
        float, typer.Option("--margin", help="Test accuracy a challenger must gain to promote.")
    ] = 0.0,
    significance: options.SignificanceOption = 0.05,
    max_parallel: Annotated[
        int,
        typer.Option(
            "--max-parallel",
            min=1,
            help="Variants trained at the same time, each in a process with its share of the "
            "cores (no more processes than the run has trials).",
        ),
    ] = 2,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Retrain every variant, even one an earlier run trained with the same data, "
            "code, settings, seed and profile (by default its results are reused).",
        ),
    ] = False,
    precision: Annotated[
        str,
        typer.Option(
            "--precision",
            help="auto (mixed_bfloat16 for convolutional variants where the CPU has native "
            "bfloat16, else float32), float32 or mixed_bfloat16.",
        ),
    ] = "auto",
) -> None:
    """Validate the data, then train, evaluate and track every variant in MLflow."""
    config = selection.config(
        force=force,
        precision=precision,
        runner=runner,
        dask_address=dask_address,
        promotion_margin=margin,
        promotion_significance=significance,
        max_parallel=max_parallel,
    )
    options.check_data(ctx, config)
    from keras_variants.cli.preflight import check_store_reachable

    check_store_reachable(config.tracking_uri)
    server = runtime.start_prefect()
    if config.runner != "processes":  # TensorFlow runs in this process: load it now, quietly
        runtime.import_tensorflow()
    from prefect.exceptions import TerminationSignal

    from flows.pipeline import run_pipeline
    from keras_variants.interrupts import install_signal_handlers

    server.wait()
    install_signal_handlers()
    try:
        result = run_pipeline(config)
    except (KeyboardInterrupt, TerminationSignal) as exc:
        prefect_server.stop()
        registered = next(iter(getattr(exc, "__notes__", [])), "nothing registered")
        typer.secho(f"stopped: runs ended KILLED, {registered}", err=True)
        raise typer.Exit(code=130) from None
    finally:
        prefect_server.stop()
    for line in _summary(config, result):
        typer.echo(line)


def _mean(values: Iterable[float]) -> float:
    values = list(values)
    return sum(values) / len(values)


def _summary(config: PipelineConfig, result: PipelineResult) -> list[str]:
    """The run's last lines: the variants, the registry decisions, the report, the UI."""
    from keras_variants.reporting.progress import SummaryRow, mlflow_ui_lines, summary_table
    from keras_variants.tracking.store import client_for
    from keras_variants.tracking.ui_links import TOOL_TAG

    client = client_for(config)
    by_label: dict[str, list] = {}
    for outcome in result.outcomes:
        by_label.setdefault(outcome.label, []).append(outcome)
    rows = [
        SummaryRow(  # the mean over seeds, when there are several
            variant=label,
            dataset=runs[0].dataset,
            validation_accuracy=_mean(o.validation_accuracy for o in runs),
            test_accuracy=_mean(o.test_metrics["test/accuracy"] for o in runs),
            test_loss=_mean(o.test_metrics["test/loss"] for o in runs),
            validation_loss_min_epoch=_mean(o.validation_loss_min_epoch for o in runs)
            if len(runs) > 1
            else runs[0].validation_loss_min_epoch,
            run_id=runs[0].run_id if len(runs) == 1 else f"mean of {len(runs)} seeds",
        )
        for label, runs in by_label.items()
    ]
    parents = {dataset: client.get_run(run_id) for dataset, run_id in result.parent_run_ids.items()}
    experiments = {dataset: run.info.experiment_id for dataset, run in parents.items()}
    pipeline_id = next(iter(parents.values())).data.tags[TOOL_TAG]
    return [
        *summary_table(rows),
        "* best validation accuracy of its data set: the challenger, put to the gate below"
        if config.promote
        else "* best validation accuracy of its data set",
        *(decision.sentence() for decision in result.decisions),
        f"report: {result.report}",
        *mlflow_ui_lines(config.tracking_uri, experiments, pipeline_id),
    ]


def report(
    run_id: Annotated[
        str | None,
        typer.Option(
            "--run-id",
            help="A parent (or child) run of the pipeline run to report "
            "on (default: the latest finished one).",
        ),
    ] = None,
    tracking_uri: options.TrackingOption = None,
) -> None:
    """Rebuild the comparison report of a past pipeline run from MLflow."""
    config = options.build("full", None, tracking_uri)
    from keras_variants.cli.preflight import check_store_exists

    check_store_exists(config.tracking_uri)
    # Plain functions, no flow: no Prefect server and no TensorFlow, so it takes seconds.
    # (The pipeline's own report task also publishes the report as Prefect artifacts.)
    from keras_variants.reporting.publish import publish_report
    from keras_variants.tracking.store import client_for

    client = client_for(config)
    if run_id is not None:
        _require_run(client, run_id, config.tracking_uri)
    typer.echo(f"report: {publish_report(client, config.reports_dir, run_id).page}")


def _require_run(client: MlflowClient, run_id: str, tracking_uri: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.get_run(run_id)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        raise VariantsError(
            f"no run {run_id} in the MLflow store {tracking_uri}: pass the id of a pipeline "
            "run or of one of its variant runs (the run summary and the MLflow UI show them)"
        ) from None
