"""Writing a pipeline run's report from MLflow and logging it to the run: the one path for
the pipeline's report task and ``variants report``.

A report is a pure function of the run's records, the registry's decisions and the report
code, so a digest of those tells whether the report on disk is already the one a rebuild
would write; then only the logging is redone, and a rebuild takes a second or two.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from mlflow.tracking import MlflowClient

from keras_variants.code_digest import code_digest
from keras_variants.registry.run_decisions import run_decisions
from keras_variants.reporting.calibration_report import calibration_section
from keras_variants.reporting.findings import groups
from keras_variants.reporting.monitoring_report import monitoring_for
from keras_variants.reporting.plots import figure_cache
from keras_variants.reporting.report import Report, build_report
from keras_variants.reporting.report_figures import dataset_figures
from keras_variants.reporting.report_pages import write_report
from keras_variants.tracking.records import PipelineRecord, load_pipeline
from keras_variants.tracking.ui_links import MLFLOW_UI, mlflow_ui_for

REPORT_CODE = "keras_variants.reporting.report_pages"  # with all it imports (code_digest)
DIGEST_FILE = "report.sha256"


@dataclass(frozen=True)
class Published:
    folder: Path  # reports/<pipeline id>/
    report: Report | None  # None: the report on disk was already up to date

    @property
    def page(self) -> Path:
        return self.folder / "report.html"


def report_digest(
    record: PipelineRecord,
    decisions: list[str],
    mlflow_ui: str = MLFLOW_UI,
    monitoring: dict[str, dict] | None = None,
) -> str:
    """SHA-256 of everything a report is made from: records, decisions, the monitors'
    measurement, where its links point, and the report code."""
    content = {"record": dataclasses.asdict(record), "decisions": decisions}
    if monitoring:
        content["monitoring"] = monitoring
    if mlflow_ui != MLFLOW_UI:  # a local store's reports keep their digests
        content["mlflow_ui"] = mlflow_ui
    digest = hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode())
    digest.update(code_digest(REPORT_CODE).encode())
    return digest.hexdigest()


def draw_figures(client: MlflowClient, reports_dir: Path, parent_run_id: str) -> list[str]:
    """The figures of the data set whose parent run is ``parent_run_id``, drawn into the
    reports' figure cache ahead of the report, which then takes them from there (a pipeline
    draws a data set's while the other trains, or beside its gate); their names."""
    record = load_pipeline(client, parent_run_id)
    dataset = next(d for d, run_id in record.parents.items() if run_id == parent_run_id)
    records = record.variants[dataset]
    with figure_cache(reports_dir / ".figures"):
        drawn = list(dataset_figures(dataset, groups(records)))
        section = calibration_section(dataset, records)
    return drawn + list(section.figures if section else [])


def publish_report(
    client: MlflowClient, reports_dir: Path, run_id: str | None = None, rebuild: bool = False
) -> Published:
    """Write the report of the pipeline run ``run_id`` belongs to (default: the latest)
    under ``reports_dir`` unless it is there already, and log it to the parent runs."""
    record = load_pipeline(client, run_id)
    decisions = run_decisions(client, record.parents.values(), record.run_ids)
    mlflow_ui = mlflow_ui_for(client.tracking_uri)  # a tracking server's own UI, if any
    monitoring = monitoring_for(client, record.run_ids)
    digest = report_digest(record, decisions, mlflow_ui, monitoring)
    folder = reports_dir / record.pipeline_id
    stamp, page = folder / DIGEST_FILE, folder / "report.html"
    report = None
    if rebuild or not (stamp.is_file() and page.is_file() and stamp.read_text() == digest):
        with figure_cache(reports_dir / ".figures"):
            report = build_report(record, decisions, mlflow_ui, monitoring)
        write_report(report, reports_dir, record.pipeline_id)
        stamp.write_text(digest)
    else:
        (reports_dir / "latest.html").write_text(page.read_text())
    for parent in record.parents.values():
        client.log_artifacts(parent, str(folder), artifact_path="report")
    return Published(folder, report)
