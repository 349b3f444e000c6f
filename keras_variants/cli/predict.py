"""``variants predict``: a registered version's answers to review texts or image files, as
lines for the terminal."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from keras_variants import runtime
from keras_variants.cli import options
from keras_variants.errors import VariantsError

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient


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
    tracking_uri: options.TrackingOption = None,
) -> None:
    """Ask a registered model, as it is served: one line per input with label and probability."""
    runtime.import_tensorflow()
    from keras_variants.tracking.store import client_for

    config = options.build("full", None, tracking_uri)
    for line in predict_lines(client_for(config), model, inputs, version):
        typer.echo(line)


def predict_lines(
    client: MlflowClient, model: str, inputs: list[str], version: str | None = None
) -> list[str]:
    """A registered version's answers (default: the champion's), one line per input: review
    texts for imdb-sentiment, image files for mnist-classifier."""
    from keras_variants.registry.loading import load_version, resolve_version
    from keras_variants.registry.versions import REGISTERED_MODELS
    from keras_variants.serving.requests import BadRequest

    version = resolve_version(client, model, version=version)
    if model == REGISTERED_MODELS["mnist"]:
        sent = [base64.b64encode(_read_image(path)).decode("ascii") for path in inputs]
    else:
        sent = inputs
    try:
        answers = load_version(client, model, version).predict(sent)
    except BadRequest as exc:
        raise VariantsError(exc.message) from None
    if model == REGISTERED_MODELS["mnist"]:
        return [
            f"{path}: {a.digit} (probability {a.probability:.4f})"
            for path, a in zip(inputs, answers, strict=True)
        ]
    return [
        f"{a.label} (probability positive {a.probability:.4f}): {_shortened(text)}"
        for text, a in zip(inputs, answers, strict=True)
    ]


def _read_image(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise VariantsError(f"{path}: cannot read the image ({exc.strerror})") from None


def _shortened(text: str, width: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."
