"""Whether the accuracy estimate's intervals hold on shifts they were not fitted on: each
known shift (rung) left out of the fitting in turn, clean windows of their own never
fitted on (:func:`held_out_coverage`), and whether they held as often as claimed
(:func:`holds`). Pure functions of the windows measured on the known shifts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from keras_variants.monitoring.interval import LEVEL, Interval, Window, calibrate, interval, placed


def held_out_coverage(
    windows: Sequence[Window],
    baseline: str,
    check: str,
    points: Sequence[Window] | None = None,
) -> list[dict]:
    """Per rung and window rows, the intervals of its windows from envelopes fitted
    without that rung: windows, how many got an estimate, how many of those held the
    truth, their mean width, and the mean and mean error of every window's estimate as a
    scoring prints it where it gives one (windows given no number count too, with their
    estimate). ``check``: clean windows measured here and never fitted on; ``baseline``:
    clean windows always fitted on. ``points``: the same windows, in the same order,
    measured by the point estimator, whose estimate is printed where it lies inside the
    interval (:func:`.interval.placed`)."""
    out = []
    for rung in dict.fromkeys(w.rung for w in windows):
        if rung == baseline:
            continue
        envelopes = calibrate([w for w in windows if w.rung not in (rung, check)], baseline)
        for rows in sorted({w.rows for w in windows if w.rung == rung}):
            at = [i for i, w in enumerate(windows) if w.rung == rung and w.rows == rows]
            mine = [windows[i] for i in at]
            results = [
                interval(envelopes, w.estimate, w.rows, {w.size: w.distances}, w.sampling)
                for w in mine
            ]
            printed = [
                _printed(w, r, None if points is None else points[i])
                for w, r, i in zip(mine, results, at, strict=True)
            ]
            given = [(w, r) for w, r in zip(mine, results, strict=True) if r.estimate is not None]
            entry: dict[str, Any] = {
                "rung": rung,
                "rows": rows,
                "windows": len(mine),
                "estimated": len(given),
            }
            if mine[0].truth is not None:
                truth = np.array([w.truth for w in mine])
                entry["true_accuracy"] = float(truth.mean())
                entry["estimate"] = float(np.mean(printed))
                entry["error"] = float(np.mean(np.abs(np.array(printed) - truth)))
            labelled = [(w, r) for w, r in given if w.truth is not None]
            if labelled:
                entry["covered"] = sum(r.low <= w.truth <= r.high for w, r in labelled)
                entry["width"] = float(np.mean([r.high - r.low for _, r in labelled]))
                entry["widest"] = float(max(r.high - r.low for _, r in labelled))
            out.append(entry)
    return out


def _printed(window: Window, result: Interval, point: Window | None) -> float:
    """The estimate a scoring prints for ``window``: the point estimator's inside the
    interval, else the interval's own (also where no number is given)."""
    moved = None if point is None else placed(result, point.estimate)
    return window.estimate if moved is None else float(point.estimate)


def holds(entry: dict[str, Any], level: float = LEVEL) -> bool:
    """Whether a :func:`held_out_coverage` entry's intervals held as often as ``level``
    (an entry with no estimate given holds: nothing was claimed)."""
    return entry.get("covered", 0) >= level * entry.get("estimated", 0) - 1e-9 or (
        "covered" not in entry
    )
