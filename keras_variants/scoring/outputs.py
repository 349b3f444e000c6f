"""What a scoring leaves: ``predictions.parquet`` and ``predictions.csv`` (the id, then the
served answer's fields), ``rejected.csv`` (id, reason), ``summary.json``, and the one line
the command prints.

The files are written into a new temporary folder beside the destination, which is renamed
to it only when all of them are complete: a scoring that fails leaves no folder that looks
finished.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow.entities.model_registry import ModelVersion

from keras_variants.errors import InputError
from keras_variants.scoring.batch import Scored, accuracy
from keras_variants.scoring.drift import DRIFT_NOT_CHECKED, DriftOutcome
from keras_variants.scoring.rows import Rejected, ScoringInput

FILES = ("predictions.parquet", "predictions.csv", "rejected.csv", "summary.json")


def check_destination(folder: Path) -> None:
    """Refuse a destination that exists and is not an empty folder: a scoring never mixes
    its files with others' or overwrites them."""
    if folder.is_dir():
        if any(folder.iterdir()):
            raise InputError(
                f"{folder}: the folder exists and is not empty; pass a new --out folder"
            )
    elif folder.exists():
        raise InputError(f"{folder}: exists and is not a folder; pass a new --out folder")


def staging_folder(destination: Path) -> Path:
    """A new hidden folder beside ``destination`` (same file system: the rename is atomic)."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{destination.name}.", dir=destination.parent))


def write_files(
    folder: Path, predictions: pd.DataFrame, rejected: list[Rejected], summary: Mapping
) -> None:
    """The four files, into ``folder``."""
    predictions.to_parquet(folder / "predictions.parquet", index=False)
    predictions.to_csv(folder / "predictions.csv", index=False)
    pd.DataFrame(
        {"id": [r.id for r in rejected], "reason": [r.reason for r in rejected]},
        columns=["id", "reason"],
    ).to_csv(folder / "rejected.csv", index=False)
    (folder / "summary.json").write_text(json.dumps(summary, indent=2, allow_nan=False) + "\n")


def publish(staging: Path, destination: Path) -> Path:
    """Rename the complete ``staging`` folder to ``destination`` (an empty folder there is
    replaced)."""
    check_destination(destination)
    with contextlib.suppress(FileNotFoundError, OSError):
        destination.rmdir()  # an empty folder: rename cannot replace it on every system
    os.replace(staging, destination)
    return destination


def discard(staging: Path | None) -> None:
    if staging is not None:
        shutil.rmtree(staging, ignore_errors=True)


def build_summary(
    *,
    rows: int,
    rejected: int,
    model: Mapping[str, Any],
    input: Mapping[str, Any],
    drift: Mapping[str, Any],
    estimate: Mapping[str, Any],
    accuracy: float,
    labelled_rows: int,
    run_id: str,
    seconds: Mapping[str, float],
) -> dict[str, Any]:
    """``summary.json``'s content: plain JSON, no NaN (a missing number is null).
    ``estimate``: ``estimated_accuracy``, ``estimated_accuracy_interval`` ([low, high] at
    90%), ``estimate_withheld`` (why there is none, or null) and ``estimate`` (what it
    rests on), as :class:`keras_variants.monitoring.check.Monitoring` gives them."""
    interval = estimate.get("estimated_accuracy_interval")
    summary: dict[str, Any] = {
        "rows": rows,
        "rejected": rejected,
        "model": dict(model),
        "input": dict(input),
        "drift": dict(drift),
        "estimated_accuracy": _number(estimate.get("estimated_accuracy")),
        "estimated_accuracy_interval": [_number(v) for v in interval] if interval else None,
        "estimate_withheld": estimate.get("estimate_withheld"),
        "estimate": estimate.get("estimate"),
    }
    if labelled_rows:
        summary["accuracy"] = _number(accuracy)
        summary["labelled_rows"] = labelled_rows
    summary["run_id"] = run_id
    summary["seconds"] = {k: round(v, 3) for k, v in seconds.items()}
    return summary


def _number(value: float | None) -> float | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return float(value)


def summary_line(summary: Mapping[str, Any]) -> str:
    """'25,000 rows scored, 3 rejected; estimated accuracy 0.86 (0.81-0.90, 90%; checked
    on shifts up to rotated 60°) (measured on 500 labels: 0.880); no drift', or
    '...; accuracy: not estimated (<why>); drift detected: review length, predicted
    classes'."""
    parts = [f"{summary['rows']:,} rows scored, {summary['rejected']:,} rejected"]
    estimate = summary.get("estimated_accuracy")
    measured = summary.get("accuracy")
    labelled = (
        f" (measured on {summary['labelled_rows']:,} labels: {measured:.3f})"
        if measured is not None
        else ""
    )
    if estimate is not None:
        parts.append(estimate_words(summary) + labelled)
    elif summary.get("estimate_withheld") and summary["drift"].get("checked", False):
        parts.append(f"accuracy: not estimated ({summary['estimate_withheld']})" + labelled)
    elif measured is not None:
        parts.append(f"accuracy {measured:.3f} on {summary['labelled_rows']:,} labelled rows")
    parts.append(drift_words(summary["drift"]))
    return "; ".join(parts)


def estimate_words(summary: Mapping[str, Any]) -> str:
    """'estimated accuracy 0.86 (0.81-0.90, 90%; checked on shifts up to rotated 60°)':
    the bounds rounded outwards, so the printed interval holds what the computed one
    does."""
    estimate = summary["estimated_accuracy"]
    words = f"estimated accuracy {estimate:.2f}"
    interval = summary.get("estimated_accuracy_interval")
    if not interval:
        return words
    basis = summary.get("estimate") or {}
    low, high = math.floor(interval[0] * 100) / 100, math.ceil(interval[1] * 100) / 100
    level = f"{basis['level']:.0%}" if "level" in basis else "90%"
    checked = basis.get("checked_on_shifts_up_to")
    up_to = f"; checked on shifts up to {checked}" if checked else ""
    return f"{words} ({low:.2f}-{high:.2f}, {level}{up_to})"


def drift_words(drift: Mapping[str, Any]) -> str:
    if not drift.get("checked", False):
        reason = drift.get("reason") or "no reference profile"
        return reason if reason.startswith(DRIFT_NOT_CHECKED) else f"{DRIFT_NOT_CHECKED}: {reason}"
    if drift.get("detected"):
        names = [s["name"] for s in drift.get("signals", []) if s.get("drifted")]
        return "drift detected: " + (", ".join(names) or "see summary.json")
    return "no drift"


@contextlib.contextmanager
def staged(destination: Path) -> Iterator[Path]:
    """A staging folder beside ``destination`` for the files; renamed to ``destination``
    when the block ends well, deleted when it does not."""
    staging = staging_folder(destination)
    try:
        yield staging
    except BaseException:
        discard(staging)
        raise
    try:
        publish(staging, destination)
    except BaseException:
        discard(staging)
        raise


class Stopwatch:
    """Seconds spent per stage of a scoring (``with watch("score"): ...``)."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        start = time.monotonic()
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.monotonic() - start

    def total(self) -> dict[str, float]:
        return self.seconds | {"total": time.monotonic() - self.started}


def summary_tags(summary: Mapping[str, Any]) -> dict[str, str]:
    """The run's tags from the summary: why no accuracy was estimated, when none was."""
    withheld = summary.get("estimate_withheld")
    return {"estimate_withheld": withheld[:5000]} if withheld else {}


def summary_metrics(summary: Mapping[str, Any], drift_metrics: Mapping[str, float]) -> dict:
    """The run's metrics: the summary's numbers and the drift check's own."""
    interval = summary.get("estimated_accuracy_interval") or [None, None]
    metrics = {
        "rows": summary["rows"],
        "rows_rejected": summary["rejected"],
        "estimated_accuracy": summary.get("estimated_accuracy"),
        "estimated_accuracy/low": interval[0],
        "estimated_accuracy/high": interval[1],
        "accuracy": summary.get("accuracy"),
        "drift/detected": float(bool(summary["drift"].get("detected"))),
    }
    if not summary["drift"].get("checked", False):
        del metrics["drift/detected"]  # not checked is not "no drift"
    return metrics | dict(drift_metrics)


def summarize(
    read: ScoringInput,
    scored: Scored,
    version: ModelVersion,
    model_id: str | None,
    drift: DriftOutcome,
    run_id: str,
    seconds: Mapping[str, float],
) -> dict[str, Any]:
    """The summary of a scoring from its parts."""
    measured, labelled = accuracy(scored)
    return build_summary(
        rows=len(scored.predictions),
        rejected=len(read.rejected) + len(scored.rejected),
        model={
            "name": version.name,
            "version": str(version.version),
            "model_id": model_id,
            "aliases": list(version.aliases),
        },
        input={
            "path": str(read.path),
            "kind": read.kind,
            "sha256": read.sha256,
            "rows": read.rows_read,
        },
        drift=drift.drift,
        estimate=drift.accuracy,
        accuracy=measured,
        labelled_rows=labelled,
        run_id=run_id,
        seconds=seconds,
    )
