"""``variants promote`` (the gate, or a rollback) and ``variants trust`` (record the file
hashes of a version registered before they were recorded): the registry's commands."""

from __future__ import annotations

from typing import Annotated

import typer

from keras_variants import runtime
from keras_variants.cli import options


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
    significance: options.SignificanceOption = 0.05,
    data_dir: options.DataDirOption = None,
    profile: options.ProfileOption = "full",
    tracking_uri: options.TrackingOption = None,
    seed: options.SeedOption = 0,
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
    config = options.build(
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
        typed = ctx.params.get("data_dir")
        check_data_dir(config.data_dir, needs, options.data_source(ctx), True, typed)
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


def trust(
    model: Annotated[
        str, typer.Option("--model", help="Registered model: imdb-sentiment or mnist-classifier.")
    ],
    version: Annotated[str, typer.Option("--version", help="Version number.")],
    tracking_uri: options.TrackingOption = None,
) -> None:
    """Record a version's file hashes as its files are now; every load then checks them.

    For a version registered before file hashes were recorded."""
    from keras_variants.registry.loading import resolve_version, trust
    from keras_variants.tracking.store import client_for

    client = client_for(options.build("full", None, tracking_uri))
    version = resolve_version(client, model, version=version)
    files = trust(client, model, version)
    typer.echo(f"{model} v{version}: recorded the SHA-256 of its {files} files as they are now")
