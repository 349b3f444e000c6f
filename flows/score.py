"""Score new data with a registered version (``variants score``), tracked as an MLflow run."""

from prefect import flow

from keras_variants.config.pipeline import PipelineConfig
from keras_variants.registry.loading import logged_model_id
from keras_variants.scoring import outputs
from keras_variants.scoring.request import ScoringRequest, ScoringResult
from keras_variants.scoring.runs import scoring_run
from keras_variants.tracking.store import client_for, experiment_id, scoring_experiment
from tasks.score import (
    check_drift,
    find_version,
    load_model,
    log_scoring,
    read_input,
    score_rows,
    write_files,
)


@flow(name="score")
def score(config: PipelineConfig, request: ScoringRequest) -> ScoringResult:
    """Read the input and find the version; then, in a run of the model's scoring experiment,
    score every row through the served model, check drift, and write the files into a
    staging folder that becomes the destination only when all is done."""
    watch = outputs.Stopwatch()
    client = client_for(config)
    with watch("read"):
        read = read_input(request)
    version = find_version(config, request)
    model_id = logged_model_id(client, version.name, str(version.version))
    with scoring_run(client, config, request.dataset, version) as run_id:
        destination = request.destination(run_id)
        with outputs.staged(destination) as staging:
            with watch("load"):
                model = load_model(config, version)
            with watch("score"):
                scored = score_rows(model, read)
            with watch("drift"):
                drift = check_drift(config, version, model, scored)
            summary = outputs.summarize(
                read, scored, version, model_id, drift, run_id, watch.total()
            )
            write_files(staging, scored, read, summary)
            log_scoring(
                config,
                run_id,
                version,
                model_id,
                read,
                outputs.summary_metrics(summary, drift.metrics),
                staging,
                outputs.summary_tags(summary),
            )
    line = outputs.summary_line(summary)
    return ScoringResult(
        run_id=run_id,
        experiment_id=experiment_id(config, scoring_experiment(version.name)),
        folder=destination,
        summary=summary,
        line=line,
    )
