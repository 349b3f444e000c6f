"""``variants predict``: a registered version's answers to review texts or image files, as
lines for the terminal."""

from __future__ import annotations

import base64
from pathlib import Path

from mlflow.tracking import MlflowClient

from keras_variants.errors import VariantsError
from keras_variants.registry.loading import load_version, resolve_version
from keras_variants.registry.versions import REGISTERED_MODELS
from keras_variants.serving.pyfunc import BadRequest


def predict_lines(
    client: MlflowClient, model: str, inputs: list[str], version: str | None = None
) -> list[str]:
    """A registered version's answers (default: the champion's), one line per input: review
    texts for imdb-sentiment, image files for mnist-classifier."""
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
