"""The ``variants`` command line: checks what the user typed, builds a typed config and
runs a flow or a plain function.

Every command follows the same order, so that a mistake answers in a second: parse and
check the options and the data folder (:mod:`keras_variants.cli.preflight`), and only then
import TensorFlow, MLflow or Prefect inside the function. Process set-up (quiet libraries,
memory, the Prefect server) lives in :mod:`keras_variants.runtime`; :func:`main` turns
every error into a few ``error:`` lines. A new command is one more ``@app.command()``
function taking the shared options below.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from keras_variants import runtime
from keras_variants.cli import serve as serve_command
from keras_variants.cli.options import TrackingOption
from keras_variants.cli.score import score
from keras_variants.errors import ConfigError, VariantsError, disk_full

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

    from flows.pipeline import PipelineResult
    from keras_variants.config.pipeline import PipelineConfig

app = typer.Typer(
    help="Train, track and compare the Keras lecture's model variants.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

VERBOSE_FLAGS = ("--verbose", "-v", "--debug")


@app.callback()
def _commands(
    verbose: Annotated[
        bool,
        typer.Option(
            *VERBOSE_FLAGS,
            help="Show the libraries' logs and the full traceback of an error "
            "(allowed anywhere on the command line).",
        ),
    ] = False,
) -> None:
    """Train, track and compare the Keras lecture's model variants."""
    runtime.prepare(verbose)


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
VariantsOption = Annotated[
    str | None,
    typer.Option("--variants", help="Comma-separated variant names (default: all six)."),
]
SeedOption = Annotated[int, typer.Option("--seed", help="Seed for weights, shuffling, splits.")]
SeedsOption = Annotated[
    str | None,
    typer.Option(
        "--seeds",
        help="Train every variant once per seed: a count (5 means seeds 0-4) or a list (0,3,7).",
    ),
]
SetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        help="Sweep a setting, e.g. imdb_dropout.dropout=0.2,0.5 (repeatable; every "
        "combination runs).",
    ),
]
StudyOption = Annotated[
    str | None,
    typer.Option(
        "--study", help="A named study: 'lecture' (its claims, 5 seeds, dropout 0.2/0.5)."
    ),
]


# Config fields whose option is not simply "--" + the field name with dashes.
OPTION_OF_FIELD = {
    "promotion_margin": "--margin",
    "promotion_significance": "--significance",
    "sweeps": "--set",
}
SignificanceOption = Annotated[
    float,
    typer.Option(
        "--significance",
        help="Largest p-value (McNemar's exact test on the same test inputs) at which a "
        "challenger counts as better than the champion; 1: any gain beyond --margin.",
    ),
]


def _config(
    profile: str, data_dir: Path | None, tracking_uri: str | None, **overrides: object
) -> PipelineConfig:
    """The typed config; a value it refuses is a usage error naming the option."""
    from pydantic import ValidationError

    from keras_variants.config.pipeline import PROFILES, build_config

    if profile not in PROFILES:
        raise typer.BadParameter(
            f"unknown profile {profile!r}; choose from {', '.join(PROFILES)}",
            param_hint="--profile",
        )
    try:
        return build_config(
            profile=profile, data_dir=data_dir, tracking_uri=tracking_uri, **overrides
        )
    except ValidationError as exc:
        error = exc.errors()[0]
        field = str(error["loc"][0]) if error["loc"] else ""
        option = OPTION_OF_FIELD.get(field, "--" + field.replace("_", "-"))
        message = error["msg"].removeprefix("Value error, ")
        raise typer.BadParameter(message, param_hint=option) from None


def _data_source(ctx: typer.Context) -> str:
    """Where --data-dir's value came from, for messages about the folder."""
    source = ctx.get_parameter_source("data_dir")
    return "VARIANTS_DATA_DIR" if source and source.name == "ENVIRONMENT" else "--data-dir"


def _check_data(ctx: typer.Context, config: PipelineConfig, served: bool = True) -> None:
    from keras_variants.cli.preflight import check_data_dir

    typed = ctx.params.get("data_dir")  # as the user wrote it, for messages
    check_data_dir(config.data_dir, config.selected(), _data_source(ctx), served, typed)


@app.command()
def validate(
    ctx: typer.Context,
    data_dir: DataDirOption = None,
    profile: ProfileOption = "full",
) -> None:
    """Ingest MNIST and IMDb and check them with Great Expectations; no training."""
    config = _config(profile, data_dir, None)
    _check_data(ctx, config, served=False)  # the checks need no word index
    server = runtime.start_prefect()
    from flows.validate import validate_data  # the checks encode samples in a lane process

    server.wait()
    try:
        summaries = validate_data(config)
    finally:
        runtime.stop_prefect_server()
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
    ctx: typer.Context,
    data_dir: DataDirOption = None,
    profile: ProfileOption = "full",
    variants: VariantsOption = None,
    tracking_uri: TrackingOption = None,
    seed: SeedOption = 0,
    seeds: SeedsOption = None,
    sweep: SetOption = None,
    study: StudyOption = None,
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
    significance: SignificanceOption = 0.05,
    max_parallel: Annotated[
        int, typer.Option("--max-parallel", min=1, help="Variants trained at the same time.")
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
    overrides = _study_overrides(variants, seed, seeds, sweep, study) | {
        "force": force,
        "precision": precision,
        "runner": runner,
        "dask_address": dask_address,
        "promotion_margin": margin,
        "promotion_significance": significance,
        "max_parallel": max_parallel,
    }
    config = _config(profile, data_dir, tracking_uri, **overrides)
    _check_data(ctx, config)
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
    except (KeyboardInterrupt, TerminationSignal):
        runtime.stop_prefect_server()
        typer.secho("stopped: runs ended KILLED, nothing registered", err=True)
        raise typer.Exit(code=130) from None
    finally:
        runtime.stop_prefect_server()
    for line in _summary(config, result):
        typer.echo(line)


def _mean(values: Iterable[float]) -> float:
    values = list(values)
    return sum(values) / len(values)


def _summary(config: PipelineConfig, result: PipelineResult) -> list[str]:
    """The run's last lines: the variants, the registry decisions, the report, the UI."""
    from keras_variants.reporting.progress import SummaryRow, mlflow_ui_lines, summary_table
    from keras_variants.tracking.store import client_for

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
            validation_loss_min_epoch=round(_mean(o.validation_loss_min_epoch for o in runs)),
            run_id=runs[0].run_id if len(runs) == 1 else f"mean of {len(runs)} seeds",
        )
        for label, runs in by_label.items()
    ]
    experiments = {
        dataset: client.get_run(run_id).info.experiment_id
        for dataset, run_id in result.parent_run_ids.items()
    }
    return [
        *summary_table(rows),
        "* best validation accuracy of its data set: the challenger registered for the gate"
        if config.promote
        else "* best validation accuracy of its data set",
        *(decision.sentence() for decision in result.decisions),
        f"report: {result.report}",
        *mlflow_ui_lines(config.tracking_uri, experiments),
    ]


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
    config = _config("full", None, tracking_uri)
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


@app.command()
def promote(
    ctx: typer.Context,
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
    significance: SignificanceOption = 0.05,
    data_dir: DataDirOption = None,
    profile: ProfileOption = "full",
    tracking_uri: TrackingOption = None,
    seed: SeedOption = 0,
) -> None:
    """Promote a registered version to champion through the same gate, or roll back."""
    from keras_variants.cli.preflight import check_data_dir, check_store_exists
    from keras_variants.config.variants import VARIANTS
    from keras_variants.registry import gate as registry  # MLflow, not TensorFlow
    from keras_variants.registry.versions import REGISTERED_MODELS

    datasets = {v: k for k, v in REGISTERED_MODELS.items()}
    if model not in datasets:
        raise typer.BadParameter(
            f"unknown model {model!r}; choose from {', '.join(datasets)}", param_hint="--model"
        )
    config = _config(
        profile,
        data_dir,
        tracking_uri,
        seed=seed,
        promotion_margin=margin,
        promotion_significance=significance,
    )
    check_store_exists(config.tracking_uri)
    if not rollback:
        needs = [v for v in VARIANTS.values() if v.dataset == datasets[model]]
        check_data_dir(config.data_dir, needs, _data_source(ctx), True, ctx.params.get("data_dir"))
    runtime.import_tensorflow()
    from keras_variants.data.datasets import load_dataset
    from keras_variants.tracking.store import client_for

    client = client_for(config)
    if rollback:
        typer.echo(registry.rollback(client, config.tracking_uri, model).sentence())
        return
    data = load_dataset(datasets[model], config.data_dir)
    decision = registry.gate(client, config, data, version=version, dry_run=dry_run, force=force)
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
    runtime.import_tensorflow()
    from keras_variants.cli.predict import predict_lines
    from keras_variants.tracking.store import client_for

    config = _config("full", None, tracking_uri)
    for line in predict_lines(client_for(config), model, inputs, version):
        typer.echo(line)


app.command()(score)


@app.command()
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
    data_dir: DataDirOption = None,
    profile: ProfileOption = "full",
    variants: VariantsOption = None,
    tracking_uri: TrackingOption = None,
    seed: SeedOption = 0,
    seeds: SeedsOption = None,
    sweep: SetOption = None,
    study: StudyOption = None,
) -> None:
    """Serve the project's deployments against a Prefect server, until Ctrl-C.

    It needs a running Prefect server: see the README's "Scheduled runs"."""
    from keras_variants.cli.schedule import Plan, check_plan, run_schedule

    plan = Plan(name, cron, on_new_data, score_inbox, model, notify)
    check_plan(plan)
    overrides = _study_overrides(variants, seed, seeds, sweep, study)
    config = _config(profile, data_dir, tracking_uri, **overrides)
    if plan.trains:
        _check_data(ctx, config)
    runtime.start_prefect(early_server=False)
    run_schedule(config, profile, plan)


app.command("serve")(serve_command.serve)


@app.command()
def trust(
    model: Annotated[
        str, typer.Option("--model", help="Registered model: imdb-sentiment or mnist-classifier.")
    ],
    version: Annotated[str, typer.Option("--version", help="Version number.")],
    tracking_uri: TrackingOption = None,
) -> None:
    """Record the file hashes of a version registered before they were recorded, as its files
    are now; from then on every load checks them."""
    from keras_variants.registry.loading import resolve_version, trust
    from keras_variants.tracking.store import client_for

    client = client_for(_config("full", None, tracking_uri))
    version = resolve_version(client, model, version=version)
    files = trust(client, model, version)
    typer.echo(f"{model} v{version}: recorded the SHA-256 of its {files} files as they are now")


def _study_overrides(
    variants: str | None,
    seed: int,
    seeds: str | None,
    sweeps: list[str] | None,
    study: str | None,
) -> dict[str, object]:
    """Seeds, variants and sweeps from --seed/--seeds, --variants, --set and --study: a
    named study's settings, each replaced by the options given with it."""
    from keras_variants.config.pipeline import STUDIES
    from keras_variants.errors import ConfigError
    from keras_variants.studies.study import parse_seeds, parse_sweeps

    overrides = _variant_overrides(variants, seed)
    try:
        if study is not None:
            if study not in STUDIES:
                raise typer.BadParameter(
                    f"unknown study {study!r}; choose from {', '.join(STUDIES)}",
                    param_hint="--study",
                )
            named = STUDIES[study]
            overrides = {"seed": named.seeds[0], "variants": named.variants} | overrides
            selected = overrides["variants"]
            overrides["seeds"] = named.seeds
            overrides["sweeps"] = {v: grid for v, grid in named.sweeps.items() if v in selected}
            del overrides["seed"]
        if seeds is not None:
            overrides.pop("seed", None)
            overrides["seeds"] = parse_seeds(seeds)
        if sweeps:
            overrides["sweeps"] = dict(overrides.get("sweeps", {})) | parse_sweeps(sweeps)
    except ConfigError as exc:
        option = "--seeds" if str(exc).startswith("--seeds") else "--set"
        raise typer.BadParameter(str(exc).split(": ", 1)[1], param_hint=option) from None
    return overrides


def _variant_overrides(variants: str | None, seed: int) -> dict[str, object]:
    overrides: dict[str, object] = {"seed": seed}
    if variants:
        overrides["variants"] = tuple(v.strip() for v in variants.split(",") if v.strip())
    return overrides


def main(argv: list[str] | None = None) -> None:
    """Console entry point. Every failure ends as a few ``error:`` lines, exit 2 for a usage
    error and 1 for anything else; ``--verbose`` adds the whole traceback before them."""
    args = _verbose_flags_first(sys.argv[1:] if argv is None else list(argv)) or ["--help"]
    try:
        code = app(args=args, prog_name="variants", standalone_mode=False)
    except typer.TyperException as exc:  # a usage error (exit code 2) or a bad file option
        message = exc.format_message()
        if exc.exit_code == 2:
            ctx = getattr(exc, "ctx", None)
            message += f" (see '{ctx.command_path if ctx else 'variants'} --help')"
        code = _fail(exc, message, exc.exit_code)
    except typer.Abort as exc:
        code = _fail(exc, "aborted", 1)
    except Exception as exc:
        code = _fail(exc, error_message(exc), 2 if isinstance(exc, ConfigError) else 1)
    finally:
        runtime.freeze_gc()
    sys.exit(code if isinstance(code, int) else 0)


def _verbose_flags_first(args: list[str]) -> list[str]:
    """``variants run --verbose`` means ``variants --verbose run``: the flag belongs to the
    whole program, so it is accepted anywhere (before a ``--``)."""
    end = args.index("--") if "--" in args else len(args)
    flags = [a for a in args[:end] if a in VERBOSE_FLAGS]
    return flags + [a for a in args[:end] if a not in VERBOSE_FLAGS] + args[end:]


def error_message(exc: BaseException) -> str:
    """What went wrong in the user's terms: our own errors as they are (also when a library
    wrapped them), a full disk as such, anything else by type, with where to look next."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, VariantsError):
            return str(cause)
        if disk_full(cause):
            where = cause.filename2 or cause.filename or "a file"  # type: ignore[attr-defined]
            return f"no space left on the device writing {where}; free space and run again"
        cause = cause.__cause__ or cause.__context__
    if any(c.__name__ == "MlflowException" for c in type(exc).__mro__):
        return f"MLflow: {exc}"  # e.g. a run, model or version that does not exist
    hint = "" if runtime.is_verbose() else " (run again with --verbose for the traceback)"
    return f"unexpected {type(exc).__name__}: {exc}{hint}"


def _fail(exc: BaseException, message: str, code: int) -> int:
    if runtime.is_verbose():
        import traceback

        traceback.print_exception(exc)
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return code
