"""The comparison report: what it says, built from the numbers (its tables' rows, the lecture's
plots, findings, claims, calibration, monitoring, registry decisions).

Built only from a :class:`~keras_variants.tracking.records.PipelineRecord` read back from
MLflow, so it can be rebuilt for any past run. The plots are drawn in
:mod:`~keras_variants.reporting.report_figures`; the Markdown and HTML pages, and writing
them, are :mod:`~keras_variants.reporting.report_pages`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

from keras_variants.reporting.calibration_report import CalibrationSection, calibration_sections
from keras_variants.reporting.findings import (
    Group,
    claims_rule,
    findings_for,
    groups,
    lecture_verdicts,
    looks_of,
    sweep_findings,
    verdict_row,
)
from keras_variants.reporting.ledger_report import cells, ledger, protocol_of
from keras_variants.reporting.report_figures import figures
from keras_variants.studies.ledger import SETUP
from keras_variants.tracking.records import PipelineRecord, VariantRecord
from keras_variants.tracking.ui_links import MLFLOW_UI, run_page

OVERFIT_GAP = "val_loss_minus_train_loss"


@dataclass
class Report:
    title: str
    tables: dict[str, list[dict[str, object]]]  # data set -> one row per variant
    findings: dict[str, list[str]]
    figures: dict[str, bytes]  # file name -> PNG bytes
    decisions: list[str] = field(default_factory=list)
    about: dict[str, str] = field(default_factory=dict)  # "date", "profile", "seed" -> text
    fingerprints: dict[str, str] = field(default_factory=dict)  # data file -> SHA-256
    runs: dict[str, str] = field(default_factory=dict)  # data set -> MLflow UI page of its run
    claims: list[dict[str, str]] = field(default_factory=list)  # findings.verdict_row
    claims_rule: str = ""  # how the claims were decided (findings.claims_rule)
    ledger: list[dict[str, object]] = field(default_factory=list)  # ledger_report.cells
    sweeps: list[str] = field(default_factory=list)  # a sentence per swept variant
    calibration: dict[str, CalibrationSection] = field(default_factory=dict)  # by data set
    monitoring: dict[str, dict] = field(default_factory=dict)  # by data set: measurement


SPREAD = "spread"  # row key: measure -> standard deviation across seeds


def variant_row(record: VariantRecord, group: Group | None = None) -> dict[str, object]:
    """A table row; for a group of seeds, ``record`` is their mean and the row carries the
    standard deviations and the number of seeds."""
    curves = record.curves
    gap = curves["val/loss"][-1] - curves["train/loss"][-1] if curves["val/loss"] else None
    row: dict[str, object] = {}
    if group is not None and group.seeds > 1:
        spread = {k: float(np.asarray(v)) for k, v in group.spread.items() if np.ndim(v) == 0}
        gaps = [r.curves["val/loss"][-1] - r.curves["train/loss"][-1] for r in group.runs]
        spread[OVERFIT_GAP] = float(np.std(gaps, ddof=1))
        row = {SPREAD: spread, "seeds": group.seeds}
    return row | {
        "variant": record.variant,
        "parameters": int(record.params.get("parameter_count", 0)),
        "test/accuracy": record.metrics.get("test/accuracy"),
        "test/loss": record.metrics.get("test/loss"),
        "test/auc": record.metrics.get("test/auc"),
        # A mean over seeds is shown as it is; one run's epoch is a whole number.
        "validation_loss_min_epoch": (
            record.metrics.get("validation_loss_min_epoch", 0)
            if row
            else int(record.metrics.get("validation_loss_min_epoch", 0))
        ),
        OVERFIT_GAP: gap,
        "training_seconds": record.metrics.get("training_seconds"),
    }


def about_run(record: PipelineRecord) -> dict[str, str]:
    """When the pipeline started, and the profile and seed(s) its variants ran with."""
    records = [r for rs in record.variants.values() for r in rs]
    profiles = sorted({r.params["profile"] for r in records if "profile" in r.params})
    seeds = sorted({r.params["seed"] for r in records if "seed" in r.params}, key=int)
    started = (
        datetime.fromtimestamp(record.start_time / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")
        if record.start_time is not None
        else "-"
    )
    protocol = protocol_of(records)
    return {
        "date": started,
        "profile": ", ".join(profiles) or "-",
        "protocol": f"{protocol}: {SETUP[protocol]} (every number below)",
        "seeds" if len(seeds) > 1 else "seed": _seed_list(seeds) or "-",
    }


def _seed_list(seeds: list[str]) -> str:
    """``0-19`` for a run of consecutive seeds (an auto-seeded study has 20), else a list."""
    numbers = [int(s) for s in seeds]
    if len(numbers) > 3 and numbers == list(range(numbers[0], numbers[-1] + 1)):
        return f"{numbers[0]}-{numbers[-1]}"
    return ", ".join(seeds)


def data_fingerprints(record: PipelineRecord) -> dict[str, str]:
    """The SHA-256 of every data file the variants were trained on, by file name."""
    prefix, suffix = "data.", ".sha256"
    return dict(
        sorted(
            (key[len(prefix) : -len(suffix)], digest)
            for rs in record.variants.values()
            for r in rs
            for key, digest in r.tags.items()
            if key.startswith(prefix) and key.endswith(suffix)
        )
    )


def build_report(
    record: PipelineRecord,
    decisions: list[str] | None = None,
    mlflow_ui: str = MLFLOW_UI,
    monitoring: dict[str, dict] | None = None,
) -> Report:
    """The report of one pipeline run; ``mlflow_ui`` is where its run links point. Runs of
    one variant (or sweep point) on several seeds are shown as their mean, with the
    spread across seeds."""
    grouped = {d: groups(rs) for d, rs in record.variants.items()}
    everything = [r for rs in record.variants.values() for r in rs]
    looks = looks_of(record.params)
    decided = lecture_verdicts(everything, looks)
    return Report(
        title=f"keras-variants pipeline {record.pipeline_id}",
        tables={d: [variant_row(g.mean, g) for g in gs] for d, gs in grouped.items()},
        findings={
            d: findings_for(d, [g.mean for g in gs]) + sweep_findings(record.variants[d])
            for d, gs in grouped.items()
        },
        figures=figures(grouped),
        decisions=list(decisions or []),
        about=about_run(record),
        fingerprints=data_fingerprints(record),
        runs={
            dataset: run_page(mlflow_ui, record.experiments[dataset], run_id)
            for dataset, run_id in record.parents.items()
            if dataset in record.experiments
        },
        claims=[verdict_row(d) for d in decided],
        claims_rule=claims_rule(looks),
        ledger=[cells(row) for row in ledger(everything, decided)],
        calibration=calibration_sections(record.variants),
        monitoring=dict(monitoring or {}),
    )
