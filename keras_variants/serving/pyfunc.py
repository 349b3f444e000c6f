"""The registered models: a Keras model and its preprocessing as one MLflow pyfunc model.

It takes what users have (review texts, digit images as base64 PNG or JPEG) and answers
with labels and probabilities; the stock ``mlflow models serve --env-manager local`` serves
it. Every conversion is :mod:`keras_variants.data.preprocessing`'s, the one training used. A
request it cannot answer gets HTTP 400 and one sentence naming the problem. How a model is
saved and loaded (as code, never a pickle) is :mod:`keras_variants.serving.saving`.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

from keras_variants import compat
from keras_variants.config.variants import DATASETS, SCORING_BATCH_ROWS, VariantConfig
from keras_variants.data.npz import sha256_of
from keras_variants.data.preprocessing import (
    decode_base64,
    encode_batch,
    keras_word_ids,
    pixels_from_image,
    ranks_from_texts,
    stored_tensor,
)
from keras_variants.data.ragged import Ragged
from keras_variants.errors import InputError, VariantsError
from keras_variants.serving.answers import Answer, Digit, Sentiment, Stored
from keras_variants.serving.limits import (
    MAX_IMAGE_CHARS,
    MAX_INPUTS,
    MAX_TEXT_CHARS,
    MC_SAMPLES_RULE,
    mc_samples_allowed,
)

KERAS_MODEL, WORD_INDEX = "keras_model", "word_index"


class BadRequest(MlflowException):
    """A request the model cannot answer: HTTP 400 with one sentence naming the problem.

    MLflow's scoring server prefixes the message of any MlflowException raised by
    ``predict`` with the whole payload ("Failed to predict data '...'"); this one keeps its
    own message, so a bad request never echoes what was sent.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message, error_code=INVALID_PARAMETER_VALUE)

    @property
    def message(self) -> str:
        return self._message

    @message.setter
    def message(self, value: str) -> None:
        if not hasattr(self, "_message"):
            self._message = value


class Stopped(Exception):
    """The caller asked the prediction to stop (its time ran out); raised between batches."""


_REQUEST = threading.local()  # the stop event of the request this thread is answering


@contextmanager
def stopping(stop: threading.Event) -> Iterator[None]:
    """Within it, this thread's predictions stop (raise :class:`Stopped`) at their next
    batch once ``stop`` is set: a server's timeout ends the work, not only the answer."""
    _REQUEST.stop = stop
    try:
        yield
    finally:
        _REQUEST.stop = None


def check_stop() -> None:
    """Raise :class:`Stopped` if this thread's request has been told to stop (see
    :func:`stopping`); a no-op outside one. Called between batches of the work."""
    stop = getattr(_REQUEST, "stop", None)
    if stop is not None and stop.is_set():
        raise Stopped


class _KerasWithPreprocessing(compat.OwnInputChecks, mlflow.pyfunc.PythonModel):
    """The Keras model with its variant's input encoding, loaded in Keras's safe mode: a
    :class:`~keras_variants.serving.answers.ServedModel`. It checks its own inputs, so that
    a bad one gets one short sentence rather than MLflow's type-hint error, which lists the
    offending values."""

    word_index: dict[str, int] | None = None  # reviews only (SentimentModel)
    word_index_sha256: str | None = None

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        import keras

        self.variant = VariantConfig.model_validate(context.model_config["variant"])
        self.keras_model = keras.saving.load_model(
            context.artifacts[KERAS_MODEL], compile=False, safe_mode=True
        )

    def scores(self, stored: Stored, mc_samples: int = 0) -> tuple[np.ndarray, np.ndarray | None]:
        """Model outputs for stored examples (word ids or uint8 pixels), in bounded batches,
        and with ``mc_samples`` > 0 the mean of that many Monte Carlo dropout passes instead,
        with each row's predictive entropy."""
        from keras_variants.model.inference import inference_outputs, mc_dropout_predict

        outputs = [np.zeros((0, DATASETS[self.variant.dataset].output_units), np.float32)]
        entropies = [np.zeros(0)]
        for start in range(0, len(stored), SCORING_BATCH_ROWS):  # memory stays bounded
            check_stop()
            rows = slice(start, start + SCORING_BATCH_ROWS)  # a view of consecutive rows
            batch = stored.take(rows) if isinstance(stored, Ragged) else stored[rows]
            encoded = encode_batch(stored_tensor(batch), self.variant)
            if mc_samples:
                mean, entropy = mc_dropout_predict(self.keras_model, encoded.numpy(), mc_samples)
                outputs.append(mean)
                entropies.append(entropy)
            else:
                # The compiled call evaluation used: the same numbers for the same batches.
                outputs.append(inference_outputs(self.keras_model, [encoded]))
        return np.concatenate(outputs), np.concatenate(entropies) if mc_samples else None

    def stored_inputs(self, model_input: list[str]) -> Stored:
        """What ``predict`` turns checked inputs into before encoding them: Keras word ids
        (reviews) or 28x28 uint8 pixels (digits). Raises BadRequest as ``predict`` does."""
        raise NotImplementedError

    def predict_stored(
        self, model_input: list[str], params: dict[str, Any] | None = None
    ) -> tuple[list[Answer], Stored]:
        """``predict``'s answers and what :meth:`stored_inputs` made of the inputs on the
        way, so that a caller needing both (the server's prediction log) decodes once."""
        raise NotImplementedError

    def last_hidden(self, model_input: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """The activations of the last hidden layer (the output layer's input) and the class
        probabilities for inputs that ``predict`` accepts, through ``predict``'s own
        preprocessing: what monitoring compares between the reference and new data."""
        return self.stored_hidden(self.stored_inputs(model_input))

    def stored_hidden(self, stored: Stored) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`last_hidden` of inputs already turned into stored examples by
        :meth:`stored_inputs` (monitoring decodes each input once)."""
        import keras

        from keras_variants.model.calibration import class_probabilities

        if getattr(self, "_hidden_model", None) is None:
            head = self.keras_model.layers[-1]
            self._hidden_model = keras.Model(
                self.keras_model.inputs, [head.input, self.keras_model.outputs[0]]
            )
        hidden, outputs = [], []
        for start in range(0, len(stored), SCORING_BATCH_ROWS):
            rows = slice(start, start + SCORING_BATCH_ROWS)
            batch = stored.take(rows) if isinstance(stored, Ragged) else stored[rows]
            encoded = encode_batch(stored_tensor(batch), self.variant)
            h, out = self._hidden_model(encoded, training=False)
            hidden.append(np.asarray(h, dtype=np.float32).reshape(len(encoded), -1))
            outputs.append(np.asarray(out, dtype=np.float32))
        return np.concatenate(hidden), class_probabilities(np.concatenate(outputs))

    def mc_samples(self, params: dict[str, Any] | None) -> int:
        """The ``mc_samples`` request parameter, checked: 0 (off) or up to
        :data:`~keras_variants.serving.limits.MAX_MC_SAMPLES` passes of a model with dropout."""
        from keras_variants.model.inference import has_dropout

        value = (params or {}).get("mc_samples", 0)
        if not mc_samples_allowed(value):
            raise BadRequest(MC_SAMPLES_RULE)
        if value and not has_dropout(self.keras_model):
            raise BadRequest(
                f'"mc_samples" needs a model with dropout; this one ({self.variant.name}) has none'
            )
        return value


class SentimentModel(_KerasWithPreprocessing):
    """imdb-sentiment: review texts in; label and probability of a positive review out."""

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        super().load_context(context)
        raw = Path(context.artifacts[WORD_INDEX]).read_bytes()
        self.word_index_sha256 = context.model_config["word_index_sha256"]
        if sha256_of(raw) != self.word_index_sha256:
            raise VariantsError(
                "the model's word index does not match the SHA-256 recorded when it was "
                "trained; the model folder was changed: register the model again"
            )
        self.word_index: dict[str, int] = json.loads(raw)

    def word_ids(self, texts: list[str]) -> Ragged:
        """The Keras word ids of review texts; raises InputError for one with no known word."""
        ranks = ranks_from_texts(texts, self.word_index)
        empty = np.flatnonzero(ranks.lengths == 0)
        if len(empty):
            raise InputError(
                f"input {empty[0]} has no word the model knows; send the text of a review in "
                "English"
            )
        return keras_word_ids(ranks, self.variant.input_shape[0])

    def stored_inputs(self, model_input: list[str]) -> Ragged:
        texts = _strings(model_input, "review text", MAX_TEXT_CHARS)
        try:
            return self.word_ids(texts)
        except InputError as exc:
            raise BadRequest(str(exc)) from None

    def predict(
        self, context: Any, model_input: list[str], params: dict[str, Any] | None = None
    ) -> list[Sentiment]:
        return self.predict_stored(model_input, params)[0]

    def predict_stored(
        self, model_input: list[str], params: dict[str, Any] | None = None
    ) -> tuple[list[Sentiment], Ragged]:
        """``predict``'s answers and the word ids they were computed from."""
        samples = self.mc_samples(params)
        stored = self.stored_inputs(model_input)
        probabilities, entropies = self.scores(stored, samples)
        answers = [
            Sentiment.of(p, None if entropies is None else float(entropies[i]))
            for i, p in enumerate(probabilities[:, 0])
        ]
        return answers, stored


class DigitModel(_KerasWithPreprocessing):
    """mnist-classifier: digit images in; digit, its probability and all ten out."""

    def stored_inputs(self, model_input: list[str]) -> np.ndarray:
        images = _strings(model_input, "base64-encoded image", MAX_IMAGE_CHARS)
        return np.stack([_pixels(i, image) for i, image in enumerate(images)])

    def predict(
        self, context: Any, model_input: list[str], params: dict[str, Any] | None = None
    ) -> list[Digit]:
        return self.predict_stored(model_input, params)[0]

    def predict_stored(
        self, model_input: list[str], params: dict[str, Any] | None = None
    ) -> tuple[list[Digit], np.ndarray]:
        """``predict``'s answers and the 28x28 pixels they were computed from (each image
        decoded once: the prediction log's features come from these pixels)."""
        samples = self.mc_samples(params)
        stored = self.stored_inputs(model_input)
        probabilities, entropies = self.scores(stored, samples)
        answers = [
            Digit.of(p, None if entropies is None else float(entropies[i]))
            for i, p in enumerate(probabilities)
        ]
        return answers, stored


MODELS: dict[str, type[_KerasWithPreprocessing]] = {"imdb": SentimentModel, "mnist": DigitModel}


def served_model(config: dict[str, Any]) -> _KerasWithPreprocessing:
    """The served model (not yet loaded) for a saved model's configuration: the class of
    its variant's data set. What the model's code file sets as the model
    (:mod:`keras_variants.serving.saving`)."""
    return MODELS[config["variant"]["dataset"]]()


JSON_TYPES = {bool: "boolean", int: "number", float: "number", list: "list", dict: "object"}


def _strings(model_input: object, what: str, limit: int) -> list[str]:
    """``model_input`` as a list of non-empty strings within the size limits, or BadRequest."""
    if isinstance(model_input, np.ndarray):
        model_input = model_input.tolist()
    if not isinstance(model_input, list):
        raise BadRequest(f'"inputs" must be a list of {what}s, not {_json_type(model_input)}')
    if not model_input:
        raise BadRequest(f'"inputs" is empty; send a list of {what}s')
    if len(model_input) > MAX_INPUTS:
        raise BadRequest(
            f"{len(model_input):,} inputs is over the limit of {MAX_INPUTS:,} per request; "
            "split the request"
        )
    for index, item in enumerate(model_input):
        if not isinstance(item, str):
            raise BadRequest(f"input {index} is {_json_type(item)}; send a {what}")
        if not item.strip():
            raise BadRequest(f"input {index} is an empty string; send a {what}")
        if len(item) > limit:
            raise BadRequest(
                f"input {index} has {len(item):,} characters, over the limit of {limit:,}"
            )
    return model_input


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    return "a " + JSON_TYPES.get(type(value), type(value).__name__)


def _pixels(index: int, image: str) -> np.ndarray:
    try:
        return pixels_from_image(decode_base64(image))
    except InputError as exc:
        raise BadRequest(f"input {index}: {exc}") from None
