"""The entry point a scoring calls: drift of new data against the version's reference
profile, and its accuracy estimated without labels with its interval, or the reason
there is none (:func:`monitor`)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.entities.model_registry import ModelVersion
from mlflow.tracking import MlflowClient

from keras_variants.errors import VariantsError
from keras_variants.monitoring.assess import assess
from keras_variants.monitoring.drift import Signal, judge, tests
from keras_variants.monitoring.interval import LEVEL, Interval
from keras_variants.monitoring.observe import observe, sample_rows
from keras_variants.monitoring.profile import load_profile
from keras_variants.serving.answers import classes_and_confidence, served_model_of


@dataclass(frozen=True)
class Monitoring:
    """The outcome of monitoring one scoring."""

    checked: bool
    reason: str | None = None
    signals: list[Signal] = field(default_factory=list)
    estimate: Interval | None = None  # the accuracy estimate, or why there is none
    method: str | None = None  # the estimator(s) printed and whether the classes were re-mixed
    rows: int = 0  # rows the signals were computed on

    @property
    def detected(self) -> bool:
        return any(signal.drifted for signal in self.signals)

    @property
    def estimated_accuracy(self) -> float | None:
        return None if self.estimate is None else self.estimate.estimate

    @property
    def drift(self) -> dict[str, Any]:
        """For ``summary.json``."""
        return {
            "detected": self.detected,
            "checked": self.checked,
            "reason": self.reason,
            "signals": [
                {
                    "name": s.name,
                    "statistic": s.statistic,
                    "p_value": s.p_value,
                    "threshold": s.threshold,
                    "drifted": s.drifted,
                    "sentence": s.sentence,
                }
                for s in self.signals
            ],
        }

    @property
    def accuracy(self) -> dict[str, Any]:
        """The estimate's part of ``summary.json``: ``estimated_accuracy`` and
        ``estimated_accuracy_interval`` ([low, high], null when none), ``estimate_withheld``
        (the reason, or null) and ``estimate`` (what it rests on)."""
        found = self.estimate
        if found is None:
            reason = self.reason or "not checked"
            return {
                "estimated_accuracy": None,
                "estimated_accuracy_interval": None,
                "estimate_withheld": reason,
                "estimate": None,
            }
        given = found.estimate is not None
        return {
            "estimated_accuracy": found.estimate,
            "estimated_accuracy_interval": [found.low, found.high] if given else None,
            "estimate_withheld": found.withheld,
            "estimate": {
                "level": LEVEL,
                "method": self.method,
                "rows_for_distance": found.size,
                "checked_on_shifts_up_to": found.checked_on,
                "beyond_on": list(found.beyond),
            },
        }

    def metrics(self) -> dict[str, float]:
        """For the scoring run: ``drift/detected``, ``drift/<signal>/statistic`` and
        ``/p_value``, ``estimated_accuracy`` with ``/low`` and ``/high`` (when there is
        one)."""
        out: dict[str, float] = {}
        if self.checked:
            out["drift/detected"] = float(self.detected)
        for s in self.signals:
            out[f"drift/{s.name}/statistic"] = s.statistic
            out[f"drift/{s.name}/p_value"] = s.p_value
        found = self.estimate
        if found is not None and found.estimate is not None:
            out["estimated_accuracy"] = found.estimate
            out["estimated_accuracy/low"] = float(found.low)
            out["estimated_accuracy/high"] = float(found.high)
        return out

    def sentences(self) -> list[str]:
        return [s.sentence for s in self.signals if s.drifted and s.sentence]


def monitor(
    client: MlflowClient,
    name: str,
    version: ModelVersion,
    model: mlflow.pyfunc.PyFuncModel,
    inputs: list[str],
    predictions: pd.DataFrame,
) -> Monitoring:
    """Drift signals and the estimated accuracy, with its interval, of ``inputs``
    (exactly what was sent to ``model.predict``, the accepted rows) and their served
    answers ``predictions`` (one row each), against the reference profile of ``name``
    ``version``.

    The signals are computed on a seeded sample of at most 1,000 rows (the largest window
    the detectors were measured on, so their measured rates apply); the accuracy estimate
    uses every row, its distances a seeded subset of that sample as large as the window
    size it was calibrated at (:func:`keras_variants.monitoring.assess.assess`). A version
    without a profile is not checked (``checked`` False, with the reason); its estimate
    is then None.
    """
    if len(inputs) != len(predictions):
        raise VariantsError(
            f"monitoring got {len(inputs)} inputs but {len(predictions)} predictions; "
            "pass one prediction per accepted input"
        )
    profile = load_profile(client, version)
    if profile is None:
        return Monitoring(
            False,
            f"{name} v{version.version} has no reference profile (registered before profiles "
            "were written); register it again to monitor it",
        )
    if not len(inputs):
        return Monitoring(False, "no accepted rows to check")
    served = served_model_of(model)
    classes, confidence = classes_and_confidence(profile.dataset, predictions)
    rng = np.random.default_rng(_seed(inputs))
    rows = sample_rows(len(inputs), rng)
    window = observe(served, [inputs[i] for i in rows], predictions.iloc[rows])
    signals = judge(profile, window, tests(profile, window, rng), profile.alpha)
    class_drifted = any(s.drifted for s in signals if s.name == "predicted_class")
    found = assess(profile, confidence, classes, window, class_drifted, rng)
    return Monitoring(True, None, signals, found.interval, found.method, len(rows))


def _seed(inputs: list[str]) -> int:
    """The same inputs give the same sample and the same permutations."""
    digest = hashlib.sha256()
    for text in inputs[:100]:
        digest.update(text.encode())
    digest.update(str(len(inputs)).encode())
    return int.from_bytes(digest.digest()[:8], "little")
