"""How rows are scored: in batches through the registered version's own pyfunc ``predict``
(the served path: its request checks, its preprocessing, its model call), so a scoring
answers exactly what ``mlflow models serve`` answers.

The served model refuses a whole request for one bad input; here such a batch is split in
halves until the bad rows stand alone, and each becomes a rejected row with the served
model's own reason, while every other row is scored.
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO

import mlflow
import numpy as np
import pandas as pd

from keras_variants.scoring.rows import Rejected
from keras_variants.serving.answers import Answer, answers_frame, classes_and_confidence
from keras_variants.serving.requests import BadRequest

REQUEST_ROWS = 1_000  # rows per predict call (the served limit is 10,000 per request)

Progress = Callable[[int, int], None]  # (rows done, rows in all)


@dataclass
class Scored:
    """The served answers, one row per scored input, and the rows the model refused.

    ``predictions`` has the input's id, then the served answer's fields (``label``,
    ``probability`` of a positive review; or ``digit`` and its ``probability``) and
    ``entropy``, the predictive entropy in nats of the served probabilities
    (:func:`~keras_variants.serving.answers.answers_frame`). ``sent`` is what was sent to
    ``predict`` for those rows, and ``labels`` their labels, if given."""

    dataset: str
    predictions: pd.DataFrame
    sent: list[str]
    labels: list[int | None] | None
    rejected: list[Rejected] = field(default_factory=list)


def score_rows(
    model: mlflow.pyfunc.PyFuncModel,
    ids: list[str],
    inputs: list[str],
    labels: list[int | None] | None = None,
    progress: Progress | None = None,
    request_rows: int = REQUEST_ROWS,
) -> Scored:
    """Every input through ``model.predict``, ``request_rows`` at a time."""
    answers: list[Answer] = []
    kept: list[int] = []
    rejected: list[Rejected] = []
    for start in range(0, len(inputs), request_rows):
        positions = list(range(start, min(start + request_rows, len(inputs))))
        _predict(model, inputs, positions, answers, kept, rejected, ids)
        if progress is not None:
            progress(positions[-1] + 1, len(inputs))
    dataset = model.unwrap_python_model().variant.dataset
    return Scored(
        dataset=dataset,
        predictions=answers_frame(dataset, answers, [ids[i] for i in kept]),
        sent=[inputs[i] for i in kept],
        labels=None if labels is None else [labels[i] for i in kept],
        rejected=rejected,
    )


def _predict(
    model: mlflow.pyfunc.PyFuncModel,
    inputs: list[str],
    positions: list[int],
    answers: list[Answer],
    kept: list[int],
    rejected: list[Rejected],
    ids: list[str],
) -> None:
    """Predict ``positions``; on a refused request, each half on its own."""
    try:
        got = model.predict([inputs[i] for i in positions])
    except BadRequest as exc:
        if len(positions) == 1:
            rejected.append(Rejected(ids[positions[0]], row_reason(exc.message)))
            return
        middle = len(positions) // 2
        for half in (positions[:middle], positions[middle:]):
            _predict(model, inputs, half, answers, kept, rejected, ids)
        return
    answers.extend(got)
    kept.extend(positions)


def row_reason(message: str) -> str:
    """The served model's sentence about its single input, as a reason for that row:
    ``input 0: the bytes are not ...`` -> ``the bytes are not ...``."""
    message = re.sub(r"^input 0: ", "", message)
    return re.sub(r"^input 0 ", "the input ", message)


def accuracy(scored: Scored) -> tuple[float, int]:
    """Accuracy over the scored rows that have a label, and how many there were
    (``nan``, 0 without labels)."""
    labels = scored.labels
    if labels is None:
        return math.nan, 0
    known = np.array([label is not None for label in labels], dtype=bool)
    if not known.any():
        return math.nan, 0
    truth = np.array([label for label in labels if label is not None], dtype=np.int64)
    predicted, _ = classes_and_confidence(scored.dataset, scored.predictions)
    return float((predicted[known] == truth).mean()), int(known.sum())


PROGRESS_MIN_ROWS = 2 * REQUEST_ROWS  # shorter inputs are done before a bar would help


def terminal_progress(total: int, stream: TextIO | None = None) -> Progress | None:
    """A progress bar on the terminal for an input of ``total`` rows: one line rewritten in
    place ("scoring  12,000/25,000 rows  48%"), removed when done; None when the input is
    short or the output is not a terminal."""
    stream = stream or sys.stderr
    if total < PROGRESS_MIN_ROWS or not stream.isatty():
        return None
    width = 30

    def show(done: int, total: int) -> None:
        filled = round(width * done / total)
        bar = "#" * filled + "-" * (width - filled)
        stream.write(f"\rscoring [{bar}] {done:,}/{total:,} rows {done / total:4.0%}")
        if done >= total:
            stream.write("\r\033[K")  # clear the line: the summary follows
        stream.flush()

    return show
