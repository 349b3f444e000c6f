"""What the user asked ``variants score`` for, and what it answers: plain data, the flow's
parameter and result."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from keras_variants.registry.versions import REGISTERED_MODELS

DEFAULT_OUT_ROOT = Path("scores")  # scores/<run id>/ in the current directory


class ScoringRequest(BaseModel):
    """Score ``input`` with ``model``'s version ``version`` (a number), or the one aliased
    ``alias`` (default: champion); write the files to ``out`` (default: scores/<run id>/)."""

    model_config = ConfigDict(frozen=True)

    input: Path
    model: str
    alias: str | None = None
    version: str | None = None
    out: Path | None = None

    @property
    def dataset(self) -> str:
        return {name: dataset for dataset, name in REGISTERED_MODELS.items()}[self.model]

    def destination(self, run_id: str) -> Path:
        return self.out if self.out is not None else DEFAULT_OUT_ROOT / run_id


class ScoringResult(BaseModel):
    """A finished scoring: its run, where its files are, its summary and its line."""

    run_id: str
    experiment_id: str
    folder: Path
    summary: dict[str, Any]
    line: str

    @property
    def drift_detected(self) -> bool:
        return bool(self.summary["drift"].get("detected"))
