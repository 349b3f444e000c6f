"""The served model's prediction log (``variants serve --log-predictions DIR``): one compact
JSON line per input, never the input itself, rotated by size.

A record holds the time, the SHA-256 of the input, the input's ``features`` (the statistics
a reference profile holds, computed by a function the caller passes in:
:func:`keras_variants.monitoring.observe.input_features`), the answer, its probability and
entropy, and the request's latency, so that drift can be computed on live traffic later.
The features come from what the prediction already decoded (a digit's pixels), and they are
computed in batches that stop with the request (:func:`~keras_variants.serving.pyfunc.
check_stop`): logging is part of the request's bounded work.
"""

from __future__ import annotations

import hashlib
import json
import logging
import logging.handlers
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from keras_variants.config.variants import SCORING_BATCH_ROWS
from keras_variants.data.ragged import take_rows
from keras_variants.serving.answers import Answer, Stored
from keras_variants.serving.requests import check_stop

LOG_FILE = "predictions.jsonl"
MAX_LOG_BYTES = 64 * 2**20  # per file, then it rotates
KEPT_LOG_FILES = 5  # predictions.jsonl.1 ... .5
# Inputs (as answered) and what the model decoded them into (word ids, pixels) -> each
# feature's value per input.
Features = Callable[[list[str], Stored], Mapping[str, np.ndarray]]


def records(
    inputs: list[str],
    stored: Stored,
    answers: Sequence[Answer],
    latency_ms: float,
    features: Features,
) -> list[dict[str, Any]]:
    """The log records of one answered request, one per input; ``stored`` is what the
    prediction decoded the inputs into. Stops (:class:`~keras_variants.serving.pyfunc.
    Stopped`) between batches once the request is told to."""
    stamp = datetime.now(UTC).isoformat(timespec="milliseconds")
    values: dict[str, list[np.ndarray]] = {}
    for start in range(0, len(inputs), SCORING_BATCH_ROWS):
        check_stop()
        rows = slice(start, start + SCORING_BATCH_ROWS)
        for name, value in features(inputs[rows], take_rows(stored, rows)).items():
            values.setdefault(name, []).append(np.asarray(value))
    columns = {name: np.concatenate(parts) for name, parts in values.items()}
    rows = []
    for row, (item, answer) in enumerate(zip(inputs, answers, strict=True)):
        rows.append(
            {
                "time": stamp,
                "input_sha256": hashlib.sha256(item.encode()).hexdigest(),
                "features": {name: round(float(v[row]), 6) for name, v in columns.items()},
                "answer": answer.predicted_label,
                "probability": round(answer.probability, 6),
                "entropy": None if answer.entropy is None else round(answer.entropy, 6),
                "latency_ms": round(latency_ms, 2),
            }
        )
    return rows


class PredictionLog:
    """Appends records under ``folder`` (made if missing); thread-safe. ``features`` gives
    the inputs' statistics from the inputs and what the prediction decoded them into."""

    def __init__(self, folder: Path, features: Features) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.features = features
        self.handler = logging.handlers.RotatingFileHandler(
            folder / LOG_FILE, maxBytes=MAX_LOG_BYTES, backupCount=KEPT_LOG_FILES
        )
        self.handler.setFormatter(logging.Formatter("%(message)s"))

    def write(
        self,
        inputs: list[str],
        stored: Stored,
        answers: Sequence[Answer],
        latency_ms: float,
    ) -> None:
        lines = "\n".join(
            json.dumps(r, separators=(",", ":"))
            for r in records(inputs, stored, answers, latency_ms, self.features)
        )
        self.handler.emit(logging.makeLogRecord({"msg": lines, "levelno": logging.INFO}))
