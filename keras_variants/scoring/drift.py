"""The monitoring part of a scoring: drift signals against the version's reference profile
and accuracy estimated without labels, with its interval or the reason there is none,
from :mod:`keras_variants.monitoring.check`.

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


def not_estimated(reason: str) -> dict[str, Any]:
    """The accuracy estimate's part of the summary when there is none, with the reason."""
    return {
        "estimated_accuracy": None,
        "estimated_accuracy_interval": None,
        "estimate_withheld": reason,
        "estimate": None,
    }


@dataclass(frozen=True)
class DriftOutcome:
    """What the summary and the run record of the monitoring check: the drift part, the
    accuracy estimate's part (``estimated_accuracy``, ``estimated_accuracy_interval``,
    ``estimate_withheld``, ``estimate``) and the run's metrics."""

    drift: dict[str, Any]
    accuracy: dict[str, Any] = field(default_factory=lambda: not_estimated("not checked"))
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def detected(self) -> bool:
        return bool(self.drift.get("detected"))

    @property
    def estimated_accuracy(self) -> float | None:
        return self.accuracy.get("estimated_accuracy")


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
        drift=dict(result.drift), accuracy=dict(result.accuracy), metrics=dict(result.metrics())
    )
