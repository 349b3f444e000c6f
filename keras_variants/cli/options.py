"""Options and checks that several commands share: the tracking store, and the choice of a
registered model and one of its versions (``score``, ``serve``). Imports Typer only."""

from __future__ import annotations

from typing import Annotated

import typer

TrackingOption = Annotated[
    str | None,
    typer.Option(
        "--tracking-uri",
        envvar="MLFLOW_TRACKING_URI",
        help="MLflow tracking store (default: sqlite mlflow.db in the current directory).",
    ),
]


def check_model_choice(model: str, alias: str | None, version: str | None) -> None:
    """A known registered model, and an alias or a version, not both: a usage error otherwise."""
    from keras_variants.registry.versions import REGISTERED_MODELS

    if model not in REGISTERED_MODELS.values():
        raise typer.BadParameter(
            f"unknown model {model!r}; choose from {', '.join(REGISTERED_MODELS.values())}",
            param_hint="--model",
        )
    if alias is not None and version is not None:
        raise typer.BadParameter("pass --alias or --version, not both", param_hint="--version")
