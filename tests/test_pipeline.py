"""The training flow end to end: smoke profile, real SQLite MLflow store, Prefect test server."""

from __future__ import annotations

import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from flows.pipeline import pipeline
from keras_variants.config.pipeline import PipelineConfig, build_config
from keras_variants.config.variants import DEFAULT_VARIANTS, VARIANTS
from keras_variants.data.datasets import load_dataset, make_splits
from keras_variants.errors import DataValidationError
from keras_variants.registry.served_accuracy import ServedAccuracy, gate_inputs
from keras_variants.tracking.store import client_for
from tests.conftest import rewrite_npz


def _client(config: PipelineConfig) -> MlflowClient:
    return client_for(config)


def test_every_variant_has_a_finished_child_run(smoke_run, smoke_config) -> None:
    client = _client(smoke_config)
    assert set(smoke_run.variants) == set(DEFAULT_VARIANTS)  # opt-in variants not run
    for dataset, parent_id in smoke_run.parent_run_ids.items():
        parent = client.get_run(parent_id)
        assert parent.info.status == "FINISHED"
        assert client.get_experiment(parent.info.experiment_id).name == dataset
        children = client.search_runs(
            [parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent_id}'"
        )
        expected = {v for v in DEFAULT_VARIANTS if VARIANTS[v].dataset == dataset}
        assert {c.data.tags["variant"] for c in children} == expected
        assert all(c.info.status == "FINISHED" for c in children)


def test_child_runs_carry_params_curves_metrics_and_inputs(smoke_run, smoke_config) -> None:
    client = _client(smoke_config)
    run = client.get_run(smoke_run.variants["imdb_l2"].run_id)
    params, metrics, tags = run.data.params, run.data.metrics, run.data.tags
    assert params["l2"] == "0.001" and params["hidden_units"] == "[16, 16]"
    assert params["epochs"] == "2" and params["profile"] == "smoke"
    assert int(params["parameter_count"]) == 10_000 * 16 + 16 + 16 * 16 + 16 + 17
    for key in ("train/loss", "train/accuracy", "val/loss", "val/accuracy"):
        history = client.get_metric_history(run.info.run_id, key)
        assert [m.step for m in history] == [1, 2]
    # The epoch named is the one whose logged validation loss is the lowest.
    val_loss = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "val/loss")}
    assert val_loss[int(metrics["validation_loss_min_epoch"])] == min(val_loss.values())
    assert tags["dataset"] == "imdb" and tags["profile"] == "smoke" and tags["git_commit"]
    assert len(tags["data.imdb.npz.sha256"]) == 64
    assert {i.dataset.name for i in run.inputs.dataset_inputs} >= {"imdb.npz"}
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert "confusion_matrix.json" in artifacts
    matrix = np.array(
        mlflow.artifacts.load_dict(f"{run.info.artifact_uri}/confusion_matrix.json")["matrix"]
    )
    assert matrix.sum() == 500
    assert metrics["test/accuracy"] == pytest.approx(np.trace(matrix) / 500)


@pytest.mark.parametrize("variant", ["mnist_cnn", "imdb_dropout"])
def test_served_model_reproduces_logged_test_accuracy(
    smoke_run, smoke_config, data_slices, variant
) -> None:
    """The logged pyfunc model, fed raw review texts or PNG digits, scores what training
    logged on the stored test rows: no skew between training and serving."""
    client = _client(smoke_config)
    run = client.get_run(smoke_run.variants[variant].run_id)
    logged = client.get_logged_model(run.outputs.model_outputs[0].model_id)
    model = mlflow.pyfunc.load_model(logged.artifact_location)
    assert str(model.metadata.get_input_schema()) == "[string (required)]"
    data = load_dataset(VARIANTS[variant].dataset, data_slices)
    rows = make_splits(data, smoke_config.profile, smoke_config.seed).test_rows
    accuracy = ServedAccuracy(gate_inputs(data, rows))(model).mean()
    assert accuracy == pytest.approx(smoke_run.variants[variant].test_metrics["test/accuracy"])


def test_same_seed_and_profile_give_same_metrics(smoke_run, smoke_config) -> None:
    repeat = {"variants": ("mnist_dense", "imdb_dropout"), "promote": False, "force": True}
    again = pipeline(smoke_config.model_copy(update=repeat))
    for name, outcome in again.variants.items():
        assert outcome.test_metrics == smoke_run.variants[name].test_metrics


def _runs(config: PipelineConfig) -> list:
    client = _client(config)
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(experiments) if experiments else []


def test_failed_training_ends_runs_failed(prefect_server, data_slices, tmp_path, monkeypatch):
    config = build_config(
        profile="smoke",
        data_dir=data_slices,
        workdir=tmp_path,
        variants=("imdb_reduced",),
        runner="threads",  # in this process, where the fault can be injected
    )

    def broken(*args, **kwargs):
        raise RuntimeError("injected training fault")

    monkeypatch.setattr("keras_variants.model.training.train_and_evaluate", broken)
    with pytest.raises(RuntimeError, match="injected training fault"):
        pipeline(config)
    statuses = {r.data.tags.get("role"): r.info.status for r in _runs(config)}
    assert statuses == {"pipeline": "FAILED", "variant": "FAILED"}


def test_invalid_data_stops_before_any_run(prefect_server, broken_dir, tmp_path) -> None:
    rewrite_npz(broken_dir / "mnist.npz", y_test=None)
    config = build_config(profile="smoke", data_dir=broken_dir, workdir=tmp_path)
    with pytest.raises(Exception, match=r"mnist\.npz: y_test: missing key"):
        pipeline(config)
    assert _runs(config) == []


def test_labels_out_of_range_stop_the_run_and_train_nothing_on_them(
    prefect_server, broken_dir, tmp_path
) -> None:
    """IMDb is checked while MNIST trains (each data set flows on its own): its bad labels
    end the run with their error, nothing runs on IMDb, and MNIST's runs are stopped (or
    had finished): none is left running."""
    with np.load(broken_dir / "imdb.npz", allow_pickle=True) as npz:
        labels = npz["y_train"].copy()
    labels[0] = 5
    rewrite_npz(broken_dir / "imdb.npz", y_train=labels)
    config = build_config(profile="smoke", data_dir=broken_dir, workdir=tmp_path)
    with pytest.raises(DataValidationError, match=r"imdb\.npz: y_train \(label\)"):
        pipeline(config)
    runs = _runs(config)
    assert not [r for r in runs if r.data.tags.get("dataset") == "imdb"]
    assert not [r for r in runs if r.info.status in ("RUNNING", "SCHEDULED")]
