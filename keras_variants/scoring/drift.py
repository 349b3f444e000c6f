"""The monitoring part of a scoring: drift signals against the version's reference profile
and accuracy estimated without labels, from :mod:`keras_variants.monitoring.check`.

A version registered before reference profiles existed is scored all the same, with
"drift not checked" and the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import mlflow
import pandas as pd
from mlflow.entities.model_registry import ModelVersion
from mlflow.tracking import MlflowClient

DRIFT_NOT_CHECKED = "drift not checked"


def not_checked(reason: str) -> dict[str, Any]:
    """The ``drift`` part when no drift check ran, with the reason."""
    return {"detected": False, "checked": False, "reason": reason, "signals": []}


@dataclass(frozen=True)
class DriftOutcome:
    """What the summary and the run record of the monitoring check."""

    drift: dict[str, Any]
    estimated_accuracy: float | None = None
    expected_error: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def detected(self) -> bool:
        return bool(self.drift.get("detected"))


def check_drift(
    client: MlflowClient,
    version: ModelVersion,
    model: mlflow.pyfunc.PyFuncModel,
    sent: list[str],
    predictions: pd.DataFrame,
) -> DriftOutcome:
    """The monitoring check of the scored rows: ``sent`` is what went to ``predict``,
    ``predictions`` the served answers (one row each)."""
    from keras_variants.monitoring.check import monitor  # SciPy: on use

    answers = predictions.drop(columns=["id"])
    result = monitor(client, version.name, version, model, sent, answers)
    return DriftOutcome(
        drift=dict(result.drift),
        estimated_accuracy=result.estimated_accuracy,
        expected_error=result.expected_error,
        metrics=dict(result.metrics()),
    )
