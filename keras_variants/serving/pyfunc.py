"""The registered models: a Keras model and its preprocessing as one MLflow pyfunc model.

It takes what users have (review texts, digit images as base64 PNG or JPEG) and answers
with labels and probabilities; the stock ``mlflow models serve --env-manager local`` serves
it. Every conversion is :mod:`keras_variants.data.preprocessing`'s, the one training used. A
request it cannot answer gets HTTP 400 and one sentence naming the problem. How a model is
saved and loaded (as code, never a pickle) is :mod:`keras_variants.serving.saving`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow
import numpy as np

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
from keras_variants.data.ragged import Ragged, take_rows
from keras_variants.errors import InputError, VariantsError
from keras_variants.serving.answers import Answer, Digit, Sentiment, Stored
from keras_variants.serving.limits import (
    MAX_IMAGE_CHARS,
    MAX_TEXT_CHARS,
    MC_SAMPLES_RULE,
    mc_samples_allowed,
)
from keras_variants.serving.requests import BadRequest, check_stop, checked_strings

KERAS_MODEL, WORD_INDEX = "keras_model", "word_index"


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
            encoded = encode_batch(stored_tensor(take_rows(stored, rows)), self.variant)
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
        from keras_variants.model.calibration import class_probabilities
        from keras_variants.model.inference import last_hidden_function

        if getattr(self, "_hidden", None) is None:
            self._hidden = last_hidden_function(self.keras_model)
        hidden, outputs = [], []
        for start in range(0, len(stored), SCORING_BATCH_ROWS):
            rows = slice(start, start + SCORING_BATCH_ROWS)
            encoded = encode_batch(stored_tensor(take_rows(stored, rows)), self.variant)
            h, out = self._hidden(encoded)
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
        texts = checked_strings(model_input, "review text", MAX_TEXT_CHARS)
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
        images = checked_strings(model_input, "base64-encoded image", MAX_IMAGE_CHARS)
        pixels = []
        for index, image in enumerate(images):
            check_stop()  # an image can take 0.1 s to decode: the request's bound covers it
            pixels.append(_pixels(index, image))
        return np.stack(pixels)

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


def _pixels(index: int, image: str) -> np.ndarray:
    try:
        return pixels_from_image(decode_base64(image))
    except InputError as exc:
        raise BadRequest(f"input {index}: {exc}") from None
