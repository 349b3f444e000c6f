"""The served model's answers (serving/answers.py): derived fields and the answers table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from keras_variants.serving.answers import (
    Digit,
    Sentiment,
    answers_frame,
    classes_and_confidence,
)

TEN = np.full(10, 0.1)
SURE_SEVEN = np.eye(10)[7]


@pytest.mark.parametrize(
    ("answer", "predicted_class", "confidence", "label"),
    [
        (Sentiment.of(0.8), 1, 0.8, "positive"),
        (Sentiment.of(0.2), 0, 0.8, "negative"),
        (Sentiment.of(0.5), 0, 0.5, "negative"),  # a tie is negative, as training's 0.5 cut
        (Digit.of(SURE_SEVEN), 7, 1.0, 7),
        (Digit.of(np.array([0.05] * 9 + [0.55])), 9, 0.55, 9),
    ],
)
def test_an_answer_names_its_class_and_confidence(
    answer: Sentiment | Digit, predicted_class: int, confidence: float, label: object
) -> None:
    assert answer.predicted_class == predicted_class
    assert answer.confidence == pytest.approx(confidence)
    assert answer.predicted_label == label
    assert sum(answer.class_probabilities) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("dataset", "answers", "columns", "entropy"),
    [
        ("imdb", [Sentiment.of(1.0), Sentiment.of(0.5)], ["label", "probability"], [0, np.log(2)]),
        ("imdb", [Sentiment.of(0.9, entropy=0.42)], ["label", "probability"], [0.42]),  # served
        ("mnist", [Digit.of(TEN), Digit.of(SURE_SEVEN)], ["digit", "probability"], [np.log(10), 0]),
        ("mnist", [], ["digit", "probability"], []),
        ("imdb", [], ["label", "probability"], []),
    ],
)
def test_the_answers_table_has_the_answer_fields_and_entropy_in_nats(
    dataset: str, answers: list, columns: list[str], entropy: list[float]
) -> None:
    frame = answers_frame(dataset, answers, ids=[f"r{i}" for i in range(len(answers))])
    assert list(frame.columns) == ["id", *columns, "entropy"]
    np.testing.assert_allclose(frame["entropy"].to_numpy(dtype=float), entropy, atol=1e-12)
    classes, confidence = classes_and_confidence(dataset, frame)
    assert classes.tolist() == [a.predicted_class for a in answers]
    np.testing.assert_allclose(confidence, [a.confidence for a in answers])


def test_the_table_of_a_file_reads_back_to_the_same_classes() -> None:
    """What a scoring writes (predictions.csv) is what monitoring reads its classes from."""
    frame = answers_frame("imdb", [Sentiment.of(0.3), Sentiment.of(0.7)], ids=["a", "b"])
    again = pd.read_csv(pd.io.common.StringIO(frame.to_csv(index=False)))
    assert classes_and_confidence("imdb", again)[0].tolist() == [0, 1]
