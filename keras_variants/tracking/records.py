"""Reading a past pipeline run back from MLflow: everything the report and promoter need."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from keras_variants.config.variants import HISTORY_KEYS
from keras_variants.errors import VariantsError
from keras_variants.tracking.trial_key import REUSED_FROM_TAG
from keras_variants.tracking.ui_links import TOOL_TAG

CURVES = tuple(HISTORY_KEYS.values())
UNCERTAINTY_FILE = "uncertainty.json"  # uncertainty.uncertainty_summary, logged by tracking


@dataclass(frozen=True)
class VariantRecord:
    variant: str
    dataset: str
    run_id: str
    params: dict[str, str]
    metrics: dict[str, float]  # latest value of each metric
    tags: dict[str, str]
    curves: dict[str, list[float]]  # "val/loss" -> one value per epoch
    # The run's uncertainty.json (reliability diagrams, far-from-data scores); None for runs
    # logged before it existed.
    uncertainty: dict | None = None

    @property
    def label(self) -> str:
        """The variant plus its sweep values (study.point_label), e.g. "imdb_l2 l2:0.01"."""
        return self.tags.get("label", self.variant)

    @property
    def seed(self) -> int:
        return int(self.params.get("seed", 0))


@dataclass(frozen=True)
class PipelineRecord:
    pipeline_id: str
    parents: dict[str, str]  # data set -> parent run id
    variants: dict[str, list[VariantRecord]] = field(default_factory=dict)  # by data set
    experiments: dict[str, str] = field(default_factory=dict)  # data set -> experiment id
    start_time: int | None = None  # of the earliest parent run, ms since the epoch (UTC)
    params: dict[str, str] = field(default_factory=dict)  # the parent runs' (seeds, protocol)

    @property
    def run_ids(self) -> set[str]:
        """Its variant runs, and the earlier runs that reused ones stand for (their models
        were registered from those)."""
        records = [r for rs in self.variants.values() for r in rs]
        return {r.run_id for r in records} | {
            r.tags[REUSED_FROM_TAG] for r in records if REUSED_FROM_TAG in r.tags
        }


def load_pipeline(client: MlflowClient, run_id: str | None = None) -> PipelineRecord:
    """The pipeline run that ``run_id`` (a parent or child run) belongs to, else the latest."""
    experiments = [e.experiment_id for e in client.search_experiments()]
    if run_id is not None:
        pipeline_id = client.get_run(run_id).data.tags.get(TOOL_TAG)
        if pipeline_id is None:
            raise VariantsError(f"run {run_id} was not started by this tool (no {TOOL_TAG} tag)")
    else:
        latest = client.search_runs(
            experiments,
            "tags.role = 'pipeline' and attributes.status = 'FINISHED'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        if not latest:
            raise VariantsError("no finished pipeline run in this MLflow store; run one first")
        pipeline_id = latest[0].data.tags[TOOL_TAG]
    runs = client.search_runs(experiments, f"tags.`{TOOL_TAG}` = '{pipeline_id}'")
    parents = {
        r.data.tags["dataset"]: r.info.run_id for r in runs if r.data.tags.get("role") == "pipeline"
    }
    parent_runs = [r for r in runs if r.data.tags.get("role") == "pipeline"]
    record = PipelineRecord(
        pipeline_id,
        parents,
        {d: [] for d in parents},
        experiments={r.data.tags["dataset"]: r.info.experiment_id for r in parent_runs},
        start_time=min((r.info.start_time for r in parent_runs), default=None),
        params={
            k: v for r in parent_runs for k, v in r.data.params.items() if not k.startswith("data.")
        },
    )
    for run in sorted(runs, key=lambda r: r.info.start_time):
        if run.data.tags.get("role") != "variant" or run.info.status != "FINISHED":
            continue
        curves = {
            key: [
                m.value
                for m in sorted(
                    client.get_metric_history(run.info.run_id, key), key=lambda m: m.step
                )
            ]
            for key in CURVES
        }
        record.variants[run.data.tags["dataset"]].append(
            VariantRecord(
                variant=run.data.tags["variant"],
                dataset=run.data.tags["dataset"],
                run_id=run.info.run_id,
                params=dict(run.data.params),
                metrics=dict(run.data.metrics),
                tags=dict(run.data.tags),
                curves=curves,
                uncertainty=load_uncertainty(client, run),
            )
        )
    return record


def load_uncertainty(client: MlflowClient, run: Run) -> dict | None:
    """The parsed ``uncertainty.json`` of a variant run, read from the earlier run it stands
    for when it reused one (a reusing run has no artifacts of its own); None when that run
    has no such file (logged before it existed)."""
    source = run.data.tags.get(REUSED_FROM_TAG, run.info.run_id)
    if UNCERTAINTY_FILE not in {f.path for f in client.list_artifacts(source)}:
        return None
    # One small file: no progress bar on the console (the CLI sets this too; serving.py alike).
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    with tempfile.TemporaryDirectory() as folder:
        return json.loads(
            Path(client.download_artifacts(source, UNCERTAINTY_FILE, folder)).read_text()
        )


RECENT_TRIALS = 5  # earlier runs of a trial whose duration sets its expected time


def trial_seconds(client: MlflowClient, datasets: list[str], profile: str) -> dict[str, float]:
    """How long each trial (by label, e.g. ``imdb_l2 l2:0.01``) took in this store's recent
    finished runs of ``profile``: the median duration (start to end of its MLflow run:
    training, evaluation and logging) of its last :data:`RECENT_TRIALS` trained (not
    reused) runs, the machine's own measured pace. Labels never trained here are missing."""
    ids = [e.experiment_id for d in datasets if (e := client.get_experiment_by_name(d))]
    if not ids:
        return {}
    runs = client.search_runs(
        ids,
        f"tags.profile = '{profile}' and attributes.status = 'FINISHED'",
        max_results=500,
        order_by=["attributes.start_time DESC"],
    )
    seen: dict[str, list[float]] = {}
    for run in runs:
        label = run.data.tags.get("label")
        if label is None or REUSED_FROM_TAG in run.data.tags or not run.info.end_time:
            continue
        times = seen.setdefault(label, [])
        if len(times) < RECENT_TRIALS:
            times.append((run.info.end_time - run.info.start_time) / 1000)
    return {label: sorted(t)[len(t) // 2] for label, t in seen.items()}
