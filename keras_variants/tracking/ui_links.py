"""Links into the MLflow UI, built in one place: where a store's UI is, and its page of an
experiment's runs, of a run, of a registered version. The terminal, the report and the
notifications all link through these.

MLflow 3.17's UI opens an experiment (its runs, one run) in its GenAI view unless the link,
or the user's last choice, says ``workflowType=machine_learning``; its model registry pages
have no such view. Pure string building: no MLflow call.
"""

from __future__ import annotations

import os
from urllib.parse import quote, urlencode, urlsplit

from keras_variants.errors import ConfigError

MLFLOW_UI = "http://127.0.0.1:5000"  # where `mlflow ui` serves a local store by default
UI_ENV = "VARIANTS_MLFLOW_UI"  # another address for a local store's UI
MODEL_TRAINING_VIEW = "?workflowType=machine_learning"
TOOL_TAG = "keras_variants.pipeline_id"  # every run this tool starts: its pipeline run's id


def mlflow_ui_for(tracking_uri: str) -> str:
    """The MLflow UI of a store: a tracking server serves its own; a local store's is where
    the user serves it, ``$VARIANTS_MLFLOW_UI`` (``http://HOST:PORT``), by default
    ``http://127.0.0.1:5000``."""
    if tracking_uri.startswith(("http://", "https://")):
        return tracking_uri.rstrip("/")
    configured = os.environ.get(UI_ENV, "").strip().rstrip("/")
    if not configured:
        return MLFLOW_UI
    parts = urlsplit(configured)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path:
        raise ConfigError(
            f"{UI_ENV} must be the MLflow UI's address like http://127.0.0.1:5000; "
            "set it to one or unset it"
        )
    return configured


def ui_host_port(mlflow_ui: str) -> tuple[str, int]:
    """The host and port ``mlflow ui`` must listen on to serve ``mlflow_ui``."""
    parts = urlsplit(mlflow_ui)
    return parts.hostname or "127.0.0.1", parts.port or (443 if parts.scheme == "https" else 80)


def experiment_runs_page(mlflow_ui: str, experiment_id: str) -> str:
    """The runs of an experiment, in the UI's model-training view."""
    return f"{mlflow_ui}/#/experiments/{experiment_id}/runs{MODEL_TRAINING_VIEW}"


def pipeline_compare_page(mlflow_ui: str, experiment_id: str, pipeline_id: str) -> str:
    """One pipeline run's variant runs of an experiment side by side in the UI's chart
    view (a chart per metric, test accuracy and loss among them), listed best test accuracy
    first. The filter and the order are the URL's own parameters; MLflow keeps the table's
    columns in the browser, not in the URL, so a link cannot choose them."""
    query = urlencode(
        {
            "workflowType": "machine_learning",
            "searchFilter": f"tags.`{TOOL_TAG}` = '{pipeline_id}' and tags.label != ''",
            "orderByKey": "metrics.`test/accuracy`",
            "orderByAsc": "false",
            "compareRunsMode": "CHART",
        },
        quote_via=quote,
    )
    return f"{mlflow_ui}/#/experiments/{experiment_id}/runs?{query}"


def run_page(mlflow_ui: str, experiment_id: str, run_id: str) -> str:
    """A run's page, in the UI's model-training view."""
    return f"{mlflow_ui}/#/experiments/{experiment_id}/runs/{run_id}{MODEL_TRAINING_VIEW}"


def version_page(mlflow_ui: str, model: str, version: str) -> str:
    """A registered version's page (its name quoted for the path)."""
    return f"{mlflow_ui}/#/models/{quote(model, safe='')}/versions/{version}"
