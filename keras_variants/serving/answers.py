"""The served model's contract: what the gate, the profiles, scoring, monitoring and the
server may rely on, and the answers it gives.

A registered model is an MLflow pyfunc (:mod:`keras_variants.serving.pyfunc`); every caller
that goes past ``predict`` (to the stored inputs, the last hidden layer, the word index)
reads it as a :class:`ServedModel`. Its answers are :class:`Sentiment` (reviews) or
:class:`Digit` (digits), each with the two derived fields everyone needs:
``predicted_class`` (the class index the answer names) and ``confidence`` (the probability
of that class). Answers as a table, and the classes and confidences of such a table, are
:func:`answers_frame` and :func:`classes_and_confidence`: the only places that know how an
answer's fields map to a class.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np
import pandas as pd
from pydantic import BaseModel

from keras_variants.config.variants import VariantConfig
from keras_variants.data.ragged import Ragged

if TYPE_CHECKING:
    import keras
    import mlflow

Stored = np.ndarray | Ragged  # what inputs become before encoding: word ids or 28x28 pixels
POSITIVE, NEGATIVE = "positive", "negative"


def stored_joined(parts: list[Stored]) -> Stored:
    """Stored examples of consecutive batches as one."""
    return Ragged.concatenate(parts) if isinstance(parts[0], Ragged) else np.concatenate(parts)


class Sentiment(BaseModel):
    """The answer for one review."""

    COLUMNS: ClassVar[tuple[str, ...]] = ("label", "probability", "entropy")

    label: str  # "positive" or "negative"
    probability: float  # that the review is positive
    entropy: float | None = None  # predictive entropy (nats), with params mc_samples > 0

    @classmethod
    def of(cls, positive: float, entropy: float | None = None) -> Sentiment:
        """The answer for a probability ``positive`` that the review is positive."""
        label = POSITIVE if positive > 0.5 else NEGATIVE
        return cls(label=label, probability=float(positive), entropy=entropy)

    @property
    def predicted_class(self) -> int:
        return int(self.label == POSITIVE)

    @property
    def predicted_label(self) -> str:
        """The answer as a person reads it: ``positive`` or ``negative``."""
        return self.label

    @property
    def confidence(self) -> float:
        return self.probability if self.predicted_class else 1.0 - self.probability

    @property
    def class_probabilities(self) -> list[float]:
        return [1.0 - self.probability, self.probability]

    @staticmethod
    def frame_classes(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """``predicted_class`` and ``confidence`` of every row of an answers frame."""
        classes = (frame["label"].to_numpy() == POSITIVE).astype(np.int64)
        probability = frame["probability"].to_numpy(dtype=np.float64)
        return classes, np.where(classes == 1, probability, 1.0 - probability)


class Digit(BaseModel):
    """The answer for one digit image."""

    COLUMNS: ClassVar[tuple[str, ...]] = ("digit", "probability", "entropy")

    digit: int
    probability: float  # of that digit
    probabilities: list[float]  # of the digits 0-9
    entropy: float | None = None  # predictive entropy (nats), with params mc_samples > 0

    @classmethod
    def of(cls, probabilities: np.ndarray, entropy: float | None = None) -> Digit:
        """The answer for the ten class probabilities ``probabilities``."""
        return cls(
            digit=int(probabilities.argmax()),
            probability=float(probabilities.max()),
            probabilities=[float(v) for v in probabilities],
            entropy=entropy,
        )

    @property
    def predicted_class(self) -> int:
        return self.digit

    @property
    def predicted_label(self) -> int:
        """The answer as a person reads it: the digit."""
        return self.digit

    @property
    def confidence(self) -> float:
        return self.probability

    @property
    def class_probabilities(self) -> list[float]:
        return self.probabilities

    @staticmethod
    def frame_classes(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """``predicted_class`` and ``confidence`` of every row of an answers frame."""
        return (
            frame["digit"].to_numpy(dtype=np.int64),
            frame["probability"].to_numpy(dtype=np.float64),
        )


Answer = Sentiment | Digit
ANSWERS: dict[str, type[Sentiment] | type[Digit]] = {"imdb": Sentiment, "mnist": Digit}
CLASS_NAMES = {"imdb": [NEGATIVE, POSITIVE], "mnist": [str(d) for d in range(10)]}


class ServedModel(Protocol):
    """A loaded registered model (``PyFuncModel.unwrap_python_model()``): ``predict`` and the
    accessors that expose each step of it, so that monitoring and the server see exactly
    what ``predict`` sees."""

    variant: VariantConfig
    keras_model: keras.Model
    word_index: dict[str, int] | None  # reviews only: the index the model was trained with
    word_index_sha256: str | None

    def predict(
        self, context: Any, model_input: list[str], params: dict[str, Any] | None = None
    ) -> Sequence[Answer]: ...

    def predict_stored(
        self, model_input: list[str], params: dict[str, Any] | None = None
    ) -> tuple[Sequence[Answer], Stored]:
        """``predict``'s answers and what :meth:`stored_inputs` made of the inputs."""
        ...

    def stored_inputs(self, model_input: list[str]) -> Stored:
        """Checked inputs as stored examples (word ids or 28x28 uint8 pixels)."""
        ...

    def stored_hidden(self, stored: Stored) -> tuple[np.ndarray, np.ndarray]:
        """The last hidden layer's activations and the class probabilities."""
        ...

    def last_hidden(self, model_input: list[str]) -> tuple[np.ndarray, np.ndarray]: ...

    def mc_samples(self, params: dict[str, Any] | None) -> int: ...


def served_model_of(model: mlflow.pyfunc.PyFuncModel) -> ServedModel:
    """The :class:`ServedModel` inside a loaded pyfunc model."""
    return model.unwrap_python_model()


def answers_frame(
    dataset: str, answers: Sequence[Answer], ids: Sequence[str] | None = None
) -> pd.DataFrame:
    """A ``dataset``'s served answers as a table: the ``id`` column when ``ids`` are given,
    then the answer's fields (``label`` or ``digit``, ``probability``) and ``entropy``: the
    served one when the model computed it (Monte Carlo dropout), else that of the answer's
    class probabilities."""
    from keras_variants.model.calibration import predictive_entropy

    kind = ANSWERS[dataset]
    probabilities = np.array([a.class_probabilities for a in answers], dtype=np.float64)
    computed = predictive_entropy(probabilities) if answers else []
    columns = {name: [getattr(a, name) for a in answers] for name in kind.COLUMNS}
    columns["entropy"] = [
        a.entropy if a.entropy is not None else float(e)
        for a, e in zip(answers, computed, strict=True)
    ]
    frame = pd.DataFrame(columns, columns=list(kind.COLUMNS))
    frame = frame.astype({"probability": np.float64, "entropy": np.float64})
    if kind is Digit:
        frame = frame.astype({"digit": np.int64})
    if ids is not None:
        frame.insert(0, "id", list(ids))
    return frame


def classes_and_confidence(dataset: str, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Predicted classes and their probabilities for the rows of an answers frame (as made by
    :func:`answers_frame`) of a ``dataset``'s model."""
    return ANSWERS[dataset].frame_classes(frame)
