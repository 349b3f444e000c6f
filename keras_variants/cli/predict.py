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
    options.check_model_choice(model, None, version)
    sent = sent_inputs(model, inputs)  # image files read and checked before TensorFlow loads
    runtime.import_tensorflow()
    from keras_variants.tracking.store import client_for

    config = options.build("full", None, tracking_uri)
    for line in predict_lines(client_for(config), model, inputs, version, sent):
        typer.echo(line)


def sent_inputs(model: str, inputs: list[str]) -> list[str]:
    """What the served model is sent for ``inputs``: review texts as they are, image files
    base64-encoded; a file that cannot be read, or is no image, is an error naming it."""
    from keras_variants.registry.versions import REGISTERED_MODELS
    from keras_variants.scoring.rows import not_an_image

    if model != REGISTERED_MODELS["mnist"]:
        return inputs
    sent = []
    for path in inputs:
        data = _read_image(path)
        reason = not_an_image(data)
        if reason is not None:
            raise VariantsError(f"{path}: {reason}; pass PNG or JPEG image files")
        sent.append(base64.b64encode(data).decode("ascii"))
    return sent


def predict_lines(
    client: MlflowClient,
    model: str,
    inputs: list[str],
    version: str | None = None,
    sent: list[str] | None = None,
) -> list[str]:
    """A registered version's answers (default: the champion's), one line per input: review
    texts for imdb-sentiment, image files for mnist-classifier (``sent``: what
    :func:`sent_inputs` made of them, if done already)."""
    from keras_variants.registry.loading import load_version, resolve_version
    from keras_variants.registry.versions import REGISTERED_MODELS
    from keras_variants.serving.requests import BadRequest

    version = resolve_version(client, model, version=version)
    if sent is None:
        sent = sent_inputs(model, inputs)
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
