"""The MLflow UI links every output of the tool carries (terminal, report, notifications)
come from one module, :mod:`keras_variants.tracking.ui_links`: a table of what each
builder makes."""

from __future__ import annotations

import pytest

from keras_variants.tracking import ui_links

ML = "?workflowType=machine_learning"  # MLflow 3.17's UI: the model-training view


@pytest.mark.parametrize(
    ("tracking_uri", "mlflow_ui"),
    [
        ("http://mlflow:5000/", "http://mlflow:5000"),  # a server serves its own UI
        ("https://ml.example.org", "https://ml.example.org"),
        ("sqlite:////w/mlflow.db", "http://127.0.0.1:5000"),  # the README's `mlflow ui`
        ("file:///w/mlruns", "http://127.0.0.1:5000"),
    ],
)
def test_the_ui_of_a_store(tracking_uri: str, mlflow_ui: str) -> None:
    assert ui_links.mlflow_ui_for(tracking_uri) == mlflow_ui


UI = "http://mlflow:5000"


@pytest.mark.parametrize(
    ("link", "expected"),
    [
        (ui_links.experiment_runs_page(UI, "7"), f"{UI}/#/experiments/7/runs{ML}"),
        (ui_links.run_page(UI, "7", "abc"), f"{UI}/#/experiments/7/runs/abc{ML}"),
        (
            ui_links.version_page(UI, "imdb-sentiment", "3"),
            f"{UI}/#/models/imdb-sentiment/versions/3",
        ),
        (ui_links.version_page(UI, "a b/c", "3"), f"{UI}/#/models/a%20b%2Fc/versions/3"),
    ],
)
def test_each_page(link: str, expected: str) -> None:
    assert link == expected


def test_a_promotion_event_links_the_versions_page(monkeypatch) -> None:
    from keras_variants.operations import events

    sent = []
    monkeypatch.setattr(events, "emit", lambda *event: sent.append(event))
    events.emit_promoted("mnist-classifier", "3", "better", "http://mlflow:5000/")
    ((name, _, payload),) = sent
    assert name == events.MODEL_PROMOTED
    assert payload["mlflow_url"] == f"{UI}/#/models/mnist-classifier/versions/3"
