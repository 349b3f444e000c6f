"""The served model's prediction log (``variants serve --log-predictions DIR``): one compact
JSON line per input, never the input itself, rotated by size.

A record holds the time, the SHA-256 of the input, the input's statistics (a review's
characters and words, an image's bytes), the answer, its probability and entropy, and the
request's latency, so that drift can be computed on live traffic later.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import logging.handlers
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from keras_variants.data.preprocessing import tokenize

LOG_FILE = "predictions.jsonl"
MAX_LOG_BYTES = 64 * 2**20  # per file, then it rotates
KEPT_LOG_FILES = 5  # predictions.jsonl.1 ... .5


def input_statistics(item: str, model: str) -> dict[str, int]:
    """A review's length in characters and words, an image's size in bytes."""
    if model == "mnist-classifier":
        try:
            return {"image_bytes": len(base64.b64decode(item, validate=True))}
        except (binascii.Error, ValueError):
            return {"image_bytes": 0}
    return {"characters": len(item), "words": len(tokenize(item))}


def records(
    model: str, inputs: list[str], answers: list[dict[str, Any]], latency_ms: float
) -> list[dict[str, Any]]:
    """The log records of one answered request, one per input."""
    stamp = datetime.now(UTC).isoformat(timespec="milliseconds")
    rows = []
    for item, answer in zip(inputs, answers, strict=True):
        label = answer["label"] if "label" in answer else answer["digit"]
        rows.append(
            {
                "time": stamp,
                "input_sha256": hashlib.sha256(item.encode()).hexdigest(),
                **input_statistics(item, model),
                "answer": label,
                "probability": round(answer["probability"], 6),
                "entropy": None if answer["entropy"] is None else round(answer["entropy"], 6),
                "latency_ms": round(latency_ms, 2),
            }
        )
    return rows


class PredictionLog:
    """Appends records under ``folder`` (made if missing); thread-safe."""

    def __init__(self, folder: Path, model: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.model = model
        self.handler = logging.handlers.RotatingFileHandler(
            folder / LOG_FILE, maxBytes=MAX_LOG_BYTES, backupCount=KEPT_LOG_FILES
        )
        self.handler.setFormatter(logging.Formatter("%(message)s"))

    def write(self, inputs: list[str], answers: list[dict[str, Any]], latency_ms: float) -> None:
        lines = "\n".join(
            json.dumps(r, separators=(",", ":"))
            for r in records(self.model, inputs, answers, latency_ms)
        )
        self.handler.emit(logging.makeLogRecord({"msg": lines, "levelno": logging.INFO}))
