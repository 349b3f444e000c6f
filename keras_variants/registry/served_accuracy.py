"""The test split as users send it (review texts, PNG digits) and whether a served model is
right on each of its inputs through its pyfunc ``predict`` (or ``predict_stored``, the
server's path to the same answers): what the registry's gate scores, so that what is
promoted is exactly what is served.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np

from keras_variants.code_digest import code_digest
from keras_variants.config.variants import NUM_WORDS, SCORING_BATCH_ROWS
from keras_variants.data.datasets import IMDB_FILE, IMDB_REVIEWS_FILE, IMDB_WORD_INDEX_FILE, Dataset
from keras_variants.data.preprocessing import png_base64, texts_from_word_ids
from keras_variants.errors import VariantsError
from keras_variants.serving.answers import (
    Answer,
    ServedModel,
    Stored,
    answers_frame,
    served_model_of,
    stored_joined,
)


@dataclass(frozen=True)
class GateInputs:
    """Test inputs as a user sends them (review texts, base64 PNG digits) and their labels."""

    inputs: list[str]
    labels: np.ndarray
    word_index_sha256: str | None = None  # of the index the stored sequences came from

    @functools.cached_property
    def key(self) -> str:
        """A digest of the inputs, labels and the code that scores them (this module and all
        it imports: the served model, its preprocessing, inference): a version's score on
        them is computed once, and again whenever any of them changes."""
        digest = hashlib.sha256(np.ascontiguousarray(self.labels).tobytes())
        for text in self.inputs:
            digest.update(text.encode())
        digest.update(code_digest(__name__).encode())
        return digest.hexdigest()[:16]


def gate_inputs(data: Dataset, test_rows: np.ndarray) -> GateInputs:
    """The test rows ``test_rows`` of ``data`` as served inputs.

    IMDb: the raw review texts from ``imdb_reviews.parquet`` beside ``imdb.npz`` when it is
    there (checked against the stored labels), else texts rebuilt from the stored word ids
    with the word index (they tokenize back to exactly those ids). MNIST: PNG images.
    """
    test = data.test.take(test_rows)
    if data.name == "mnist":
        return GateInputs([png_base64(image) for image in test.inputs], test.labels)
    sha = data.fingerprints.get(IMDB_WORD_INDEX_FILE)
    if IMDB_WORD_INDEX_FILE not in data.files:
        raise VariantsError(
            f"the gate needs {IMDB_WORD_INDEX_FILE} beside {IMDB_FILE} to turn the test "
            "reviews into text; put it in the data folder"
        )
    reviews = Path(data.files[IMDB_FILE]).with_name(IMDB_REVIEWS_FILE)
    if reviews.is_file():
        import pandas as pd

        frame = pd.read_parquet(reviews, columns=["split", "label", "text"])
        rows = frame[frame["split"] == "test"].iloc[test_rows]
        if not np.array_equal(rows["label"].to_numpy(), test.labels):
            raise VariantsError(
                f"{IMDB_REVIEWS_FILE}: its test labels differ from {IMDB_FILE}'s; the files "
                "must hold the same reviews row for row"
            )
        return GateInputs(rows["text"].tolist(), test.labels, sha)
    word_index = json.loads(Path(data.files[IMDB_WORD_INDEX_FILE]).read_bytes())
    return GateInputs(texts_from_word_ids(test.inputs, word_index, NUM_WORDS), test.labels, sha)


@dataclass(frozen=True)
class ServedAccuracy:
    """A served model scored on the gate's inputs through its pyfunc ``predict`` (the
    profile's measurement: ``predict_stored``): whether it is right on each input, a bool
    per input in order (their mean is its test accuracy)."""

    gate: GateInputs

    @property
    def key(self) -> str:
        return self.gate.key

    def __call__(self, model: mlflow.pyfunc.PyFuncModel) -> np.ndarray:
        return self.correct(self.answers(model))

    def answers(self, model: mlflow.pyfunc.PyFuncModel) -> list[Answer]:
        """The served answers to the gate's inputs, through ``predict`` in scoring batches."""
        self._check_word_index(served_model_of(model))
        return [
            answer for batch in self._batches() for answer in model.predict(self.gate.inputs[batch])
        ]

    def answers_and_stored(self, served: ServedModel) -> tuple[list[Answer], Stored]:
        """:meth:`answers` through ``predict_stored`` (``predict``'s own path, the one the
        server calls), with what it decoded the inputs into on the way (word ids, pixels):
        the profile then decodes none of them again."""
        self._check_word_index(served)
        if not self.gate.inputs:
            raise VariantsError("the gate has no test inputs to score the model on")
        answers: list[Answer] = []
        stored: list[Stored] = []
        for batch in self._batches():
            got, decoded = served.predict_stored(self.gate.inputs[batch])
            answers += got
            stored.append(decoded)
        return answers, stored_joined(stored)

    def _batches(self) -> list[slice]:
        rows = SCORING_BATCH_ROWS  # as evaluation batched the same rows
        return [slice(start, start + rows) for start in range(0, len(self.gate.inputs), rows)]

    def _check_word_index(self, served: ServedModel) -> None:
        trained_with = served.word_index_sha256
        if trained_with and self.gate.word_index_sha256 not in (None, trained_with):
            raise VariantsError(
                f"it was trained with word index sha256 {trained_with[:12]}..., the test "
                f"data's {IMDB_WORD_INDEX_FILE} is {self.gate.word_index_sha256[:12]}...; "
                "score it on data made with its own word index"
            )

    def correct(self, answers: list[Answer]) -> np.ndarray:
        """Whether each answer is right, in the inputs' order."""
        if len(answers) != len(self.gate.labels):
            raise ValueError(f"{len(answers)} answers for {len(self.gate.labels)} inputs")
        predicted = np.array([answer.predicted_class for answer in answers], dtype=np.int64)
        return predicted == np.asarray(self.gate.labels)


def score_served(model_dir: str, scorer: Callable[[object], np.ndarray]) -> np.ndarray:
    """``scorer``'s answer about the served model saved in ``model_dir``."""
    from keras_variants.serving.saving import load_served

    return np.asarray(scorer(load_served(model_dir)))


def score_and_profile(
    model_dir: str, scorer: ServedAccuracy, seed: int
) -> tuple[np.ndarray, bytes, dict[str, object]]:
    """Whether the served model is right on each of the gate's inputs and, from the same
    answers, its reference profile and the measurement of its monitors on the known shifts."""
    from keras_variants.monitoring.ladders import measure
    from keras_variants.serving.saving import load_served

    served = served_model_of(load_served(model_dir))
    answers, stored = scorer.answers_and_stored(served)
    profile, measurement = measure(
        served,
        scorer.gate.inputs,
        scorer.gate.labels,
        answers_frame(served.variant.dataset, answers),
        seed,
        stored,
    )
    return scorer.correct(answers), profile.to_bytes(), measurement
