"""Promotion gate, aliases, rollback and the comparison report, on a real MLflow registry."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime

import numpy as np
import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from flows.pipeline import pipeline
from flows.report import comparison_report
from keras_variants.data.datasets import load_dataset, make_splits
from keras_variants.monitoring.stored import store_profile
from keras_variants.registry import gate, gate_memo, served_accuracy
from keras_variants.registry.versions import register_challenger
from keras_variants.reporting.report import build_report
from keras_variants.reporting.report_pages import to_markdown
from keras_variants.tracking.records import load_pipeline
from keras_variants.tracking.store import client_for


def _alias(client: MlflowClient, name: str, alias: str) -> str | None:
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException as exc:  # the alias is not set; any other error fails the test
        assert "alias" in str(exc).lower(), exc
        return None


def test_first_run_promotes_a_champion_per_data_set(smoke_run, smoke_config) -> None:
    client = client_for(smoke_config)
    assert {d.model for d in smoke_run.decisions} == {"mnist-classifier", "imdb-sentiment"}
    for decision in smoke_run.decisions:
        assert decision.promoted, decision.reason
        version = client.get_model_version(decision.model, decision.version)
        assert _alias(client, decision.model, "champion") == decision.version
        assert _alias(client, decision.model, "challenger") == decision.version
        assert version.tags["promotion.decision"] == "promoted"
        assert version.tags["variant"] and version.tags["run_id"]
        assert (
            len(
                version.tags[
                    "data.mnist.npz.sha256" if "mnist" in decision.model else "data.imdb.npz.sha256"
                ]
            )
            == 64
        )
        assert float(version.tags["val/accuracy"]) > 0
        # The gate's score of the model loaded back is the run's own test accuracy.
        test_accuracy = client.get_run(version.run_id).data.metrics["test/accuracy"]
        assert decision.challenger_accuracy == pytest.approx(test_accuracy, abs=1e-6)


def test_versions_come_from_logged_models_named_after_the_trial(smoke_run, smoke_config) -> None:
    """What the MLflow UI links: version -> logged model (source ``models:/<id>``), logged
    model -> versions (``mlflow.modelVersions``), test metrics -> the test rows' dataset."""
    client = client_for(smoke_config)
    for decision in smoke_run.decisions:
        version = client.get_model_version(decision.model, decision.version)
        assert version.source.startswith("models:/m-")
        model = client.get_logged_model(version.source.removeprefix("models:/"))
        run = client.get_run(version.run_id)
        assert model.name == f"{run.data.tags['label']} seed {run.data.params['seed']}"
        assert json.loads(model.tags["mlflow.modelVersions"]) == [
            {"name": decision.model, "version": decision.version}
        ]
        assert client.get_model_version_download_uri(decision.model, decision.version) == (
            model.artifact_location
        )
        tested = [i.dataset for i in run.inputs.dataset_inputs if i.tags[0].value == "testing"]
        assert [d.name for d in tested] == [f"{run.data.tags['dataset']} test"]
        assert json.loads(tested[0].profile) == {"split": "test", "rows": 500}
        linked = {m.key: (m.dataset_name, m.dataset_digest) for m in model.metrics}
        assert linked["test/accuracy"] == (tested[0].name, tested[0].digest)
        assert linked["training_seconds"] == (None, None)


def test_logged_model_names_keep_to_what_mlflow_allows() -> None:
    from keras_variants.config.trials import trials
    from keras_variants.tracking.logged_models import logged_model_name

    swept = trials(("imdb_dropout",), (1,), {"imdb_dropout": {"dropout": (0.2,)}})[0]
    assert logged_model_name(swept) == "imdb_dropout dropout=0p2 seed 1"
    plain = trials(("mnist_cnn",), (0,), {})[0]
    assert logged_model_name(plain) == "mnist_cnn seed 0"


def test_report_matches_mlflow_and_embeds_plots(smoke_run, smoke_config) -> None:
    html = smoke_run.report.read_text()
    assert (smoke_config.reports_dir / "latest.html").read_text().startswith("<!doctype html>")
    # The lecture's four plots, and per data set a reliability diagram and far-from-data plot.
    assert html.count("src='data:image/png;base64,") == 8
    client = client_for(smoke_config)
    # Seven columns after the name; MNIST's six: no AUC column with no value in it.
    rows = dict(re.findall(r"<tr><td>(\w+)</td>((?:<td>[^<]*</td>){6,7})</tr>", html))
    assert set(rows) == set(smoke_run.variants)
    for name, outcome in smoke_run.variants.items():
        run = client.get_run(outcome.run_id)
        _, accuracy, *_, min_epoch, gap, _ = re.findall(r"<td>([^<]*)</td>", rows[name])
        assert float(accuracy) == pytest.approx(run.data.metrics["test/accuracy"], abs=5e-5)
        assert int(min_epoch) == run.data.metrics["validation_loss_min_epoch"]
        last = {
            key: max(client.get_metric_history(outcome.run_id, key), key=lambda m: m.step).value
            for key in ("train/loss", "val/loss")
        }
        assert gap == f"{last['val/loss'] - last['train/loss']:+.4f}"
        trend = (
            f"starts to overfit after epoch {int(min_epoch)} of 2"
            if int(min_epoch) < 2
            else "was still improving at its last epoch (2)"
        )
        assert f"<li>{name} {trend} (lowest validation loss" in html
    assert "<th>val loss - train loss (last epoch; &gt; 0: overfitting)</th>" in html
    for decision in smoke_run.decisions:  # what the terminal printed
        assert f"<li>{decision.model} v{decision.version}: promoted to champion: first" in html
    mnist_table = html.split("<h3>mnist</h3>")[1].split("</table>")[0]
    assert "<th>test AUC</th>" in html and "<th>test AUC</th>" not in mnist_table
    markdown = (smoke_run.report.parent / "report.md").read_text()
    assert "| imdb_reduced |" in markdown
    assert "![imdb_validation_loss.png](imdb_validation_loss.png)" in markdown
    parent = smoke_run.parent_run_ids["imdb"]
    assert {a.path for a in client.list_artifacts(parent, "report")} >= {"report/report.html"}


def test_report_header_names_date_profile_seed_data_and_runs(
    smoke_run, smoke_config, data_slices
) -> None:
    client = client_for(smoke_config)
    record = load_pipeline(client, smoke_run.parent_run_ids["mnist"])
    report = build_report(record)
    parents = {d: client.get_run(run_id).info for d, run_id in smoke_run.parent_run_ids.items()}
    started = min(info.start_time for info in parents.values()) / 1000
    assert report.about == {
        "date": datetime.fromtimestamp(started, tz=UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "profile": "smoke",
        "protocol": "lecture: validates on rows held out of the training data (every number below)",
        "seed": str(smoke_config.seed),
    }
    assert {"mnist.npz", "imdb.npz"} <= set(report.fingerprints)
    for file, digest in report.fingerprints.items():
        assert digest == hashlib.sha256((data_slices / file).read_bytes()).hexdigest()
    assert report.runs == {
        d: f"http://127.0.0.1:5000/#/experiments/{info.experiment_id}/runs/{info.run_id}"
        "?workflowType=machine_learning"
        for d, info in parents.items()
    }
    html = smoke_run.report.read_text()
    for label, text in report.about.items():
        assert f"<dt>{label}</dt><dd>{text}</dd>" in html
    for file, digest in report.fingerprints.items():
        assert f"<dt>{file} SHA-256</dt><dd><code>{digest}</code></dd>" in html
    for dataset, url in report.runs.items():
        assert f"<a href='{url}'>{dataset}</a>" in html
    # Prefect's UI shows images only as data URIs: the artifact embeds all eight plots.
    artifact = to_markdown(report)
    assert len(re.findall(r"!\[\w+\.png\]\(data:image/png;base64,", artifact)) == 8
    assert f"[mnist]({report.runs['mnist']})" in artifact


def test_worse_challenger_rejected_then_forced_and_rolled_back(
    smoke_run, smoke_config, data_slices
) -> None:
    client = client_for(smoke_config)
    champions = {d.model: _alias(client, d.model, "champion") for d in smoke_run.decisions}
    challenger_before = _alias(client, "imdb-sentiment", "challenger")
    try:
        _reject_force_and_roll_back(client, champions, smoke_config, data_slices)
    finally:  # leave the shared registry as the other tests expect it, whatever the order
        client.set_registered_model_alias("imdb-sentiment", "challenger", challenger_before)
        client.set_registered_model_alias("imdb-sentiment", "champion", champions["imdb-sentiment"])


def _reject_force_and_roll_back(client, champions, smoke_config, data_slices) -> None:
    second = pipeline(
        smoke_config.model_copy(update={"variants": ("imdb_reduced",), "promotion_margin": 1.0})
    )
    (decision,) = second.decisions
    assert not decision.promoted and "the gain is not more than the margin 1" in decision.reason
    assert f"champion v{champions['imdb-sentiment']} got wrong" in decision.reason
    assert _alias(client, "imdb-sentiment", "champion") == champions["imdb-sentiment"]
    assert _alias(client, "imdb-sentiment", "challenger") == decision.version
    tags = client.get_model_version("imdb-sentiment", decision.version).tags
    assert tags["promotion.decision"] == "rejected"
    assert f"<li>imdb-sentiment v{decision.version}: not promoted: right on " in (
        second.report.read_text()
    )

    # The same rejected challenger, pushed through the gate by hand: dry run, force, rollback.
    name, challenger = "imdb-sentiment", decision.version
    champion = champions[name]
    data = load_dataset("imdb", data_slices)
    rows = make_splits(data, smoke_config.profile, 0).test_rows
    scorer = served_accuracy.ServedAccuracy(served_accuracy.gate_inputs(data, rows))
    dry = gate.promote(client, name, challenger, scorer, margin=1.0, dry_run=True, force=True)
    assert dry.promoted and _alias(client, name, "champion") == champion
    forced = gate.promote(client, name, challenger, scorer, margin=1.0, force=True)
    assert forced.promoted and "(forced)" in forced.reason
    assert _alias(client, name, "champion") == challenger
    assert _alias(client, name, "previous") == champion
    gate.rollback(client, smoke_config.tracking_uri, name)
    assert _alias(client, name, "champion") == champion
    assert _alias(client, name, "previous") is None
    with pytest.raises(Exception, match="no 'previous' version"):
        gate.rollback(client, smoke_config.tracking_uri, name)


def test_gate_scores_each_version_once_per_test_data(smoke_run, smoke_config, data_slices) -> None:
    client, name = client_for(smoke_config), "mnist-classifier"
    champion = _alias(client, name, "champion")
    data = load_dataset("mnist", data_slices)
    rows = make_splits(data, smoke_config.profile, 0).test_rows
    scorer = served_accuracy.ServedAccuracy(served_accuracy.gate_inputs(data, rows))
    memo = f"gate.correct.{scorer.key}"
    assert len(client.get_model_version(name, champion).tags[memo]) == 32  # the seal alone
    remembered = gate_memo.remembered(client, name, champion, scorer.key)
    assert remembered is not None and remembered.size == len(rows)  # one per test input
    again = gate.promote(client, name, int(champion), scorer)  # MLflow's versions are ints
    assert again.reason == "is already the champion" and not again.promoted
    assert remembered.mean() == again.challenger_accuracy
    # Other test rows, another digest: scored afresh.
    assert (
        served_accuracy.ServedAccuracy(served_accuracy.gate_inputs(data, rows[:100])).key
        != scorer.key
    )
    # The gate trusts remembered answers, sealed to the files, instead of loading the model.
    gate_memo.remember(client, name, champion, scorer.key, np.arange(500) < 250)
    decision = gate.promote(client, name, champion, scorer, dry_run=True)
    assert decision.challenger_accuracy == 0.5
    gate_memo.remember(client, name, champion, scorer.key, remembered)


def test_gate_promotes_on_paired_evidence_not_on_a_gain(smoke_run, smoke_config) -> None:
    """A challenger a little better than the champion on the same 500 inputs is not
    promoted unless the per-input answers show it beyond chance; the reason says why."""
    client, name = client_for(smoke_config), "imdb-sentiment"
    champion = _alias(client, name, "champion")
    challenger_before = _alias(client, name, "challenger")
    taken = {v.run_id for v in client.search_model_versions(f"name = '{name}'")}
    parent = smoke_run.parent_run_ids["imdb"]
    record = next(
        r for r in load_pipeline(client, parent).variants["imdb"] if r.run_id not in taken
    )
    challenger = register_challenger(client, record)
    scorer = _Remembered()
    champion_right = np.arange(500) < 400  # test accuracy 0.800

    def challenger_answers(b: int, c: int) -> None:
        """Right on ``b`` inputs the champion got wrong, wrong on ``c`` it got right."""
        answers = champion_right.copy()
        answers[:c] = False
        answers[400 : 400 + b] = True
        gate_memo.remember(client, name, challenger, scorer.key, answers)

    try:
        gate_memo.remember(client, name, champion, scorer.key, champion_right)
        store_profile(client, name, challenger, b"a stand-in", {})  # monitored, as the gate's
        challenger_answers(8, 5)
        noise = gate.promote(client, name, challenger, scorer, dry_run=True)
        assert not noise.promoted and noise.champion_accuracy == 0.8
        assert noise.reason.startswith(
            f"right on 8 inputs champion v{champion} got wrong, wrong on 5 it got right "
            "(test accuracy 0.8060 vs 0.8000 on 500 inputs, gain +0.0060), McNemar exact p = 0.58"
        )
        # Level 1 asks for no test: any gain beyond the margin promotes.
        assert gate.promote(
            client, name, challenger, scorer, significance=1.0, dry_run=True
        ).promoted
        challenger_answers(30, 5)
        evidence = gate.promote(client, name, challenger, scorer, dry_run=True)
        assert evidence.promoted and "better beyond chance (p <= 0.05)" in evidence.reason
        assert evidence.p_value == pytest.approx(2.236e-5, rel=1e-3)
    finally:
        client.delete_model_version(name, challenger)
        client.set_registered_model_alias(name, "challenger", challenger_before)
        client.delete_model_version_tag(name, champion, scorer.memo)
    assert _alias(client, name, "champion") == champion


class _Remembered:
    """A scorer whose answers the gate finds remembered on every version it asks about."""

    key = "paired-test"
    memo = f"gate.correct.{key}"

    def __call__(self, model):
        raise AssertionError("the gate should have used the remembered answers")


def test_report_rebuilds_from_any_run_id(smoke_run, smoke_config) -> None:
    client = client_for(smoke_config)
    child = smoke_run.variants["mnist_cnn"].run_id
    record = load_pipeline(client, child)
    assert record.parents == smoke_run.parent_run_ids
    assert {r.variant for r in record.variants["mnist"]} == {"mnist_dense", "mnist_cnn"}
    page = comparison_report(smoke_config, child)
    assert page.parent.name == record.pipeline_id
    assert "<td>imdb_l2</td>" in page.read_text()


def test_a_report_is_rebuilt_only_when_its_inputs_change(smoke_run, smoke_config) -> None:
    from keras_variants.reporting.publish import DIGEST_FILE, publish_report

    client, parent = client_for(smoke_config), smoke_run.parent_run_ids["imdb"]
    first = publish_report(client, smoke_config.reports_dir, parent)
    again = publish_report(client, smoke_config.reports_dir, parent)
    assert again.report is None and again.page == first.page  # up to date: not rebuilt
    assert again.page.read_text() == (smoke_config.reports_dir / "latest.html").read_text()
    (first.folder / DIGEST_FILE).write_text("an older report")
    assert publish_report(client, smoke_config.reports_dir, parent).report is not None
