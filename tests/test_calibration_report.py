"""The report's "Calibration and uncertainty" section: its rows are the MLflow metrics, its
figures are there, its sentences use the right numbers, and a reused run's uncertainty.json
is read from the run it reused."""

from __future__ import annotations

import base64
import html
import io
import math
import re

import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from PIL import Image

from keras_variants.model.calibration import reliability_diagram
from keras_variants.reporting.calibration_report import (
    COLUMNS,
    MC_COLUMNS,
    calibration_section,
    cell,
    far_sentence,
    mc_sentence,
    rotation_sentence,
    to_html,
)
from keras_variants.reporting.report import build_report
from keras_variants.reporting.report_pages import to_markdown
from keras_variants.tracking.records import UNCERTAINTY_FILE, VariantRecord, load_pipeline
from keras_variants.tracking.store import client_for
from keras_variants.tracking.trial_key import REUSED_FROM_TAG
from keras_variants.tracking.ui_links import TOOL_TAG

FIGURES = {
    "imdb": ["imdb_reliability.png", "imdb_far_from_data.png"],
    "mnist": ["mnist_reliability.png", "mnist_rotated_digits.png"],
}


def _uncertainty(dataset: str, dropout: bool, seed: int = 0) -> dict:
    """An uncertainty.json in uncertainty.uncertainty_summary's layout, from random
    predictions."""
    rng = np.random.default_rng(seed)
    classes = 10 if dataset == "mnist" else 2
    labels = rng.integers(0, classes, 200)
    probabilities = rng.dirichlet(np.ones(classes), 200)
    reliability = {"deterministic": reliability_diagram(labels, probabilities)}
    if dropout:
        reliability["mc_dropout"] = reliability_diagram(labels, rng.dirichlet([2] * classes, 200))
    if dataset == "mnist":
        points = list(range(0, 181, 15))
        far = {
            "axis": "angle_degrees",
            "accuracy": np.linspace(0.9, 0.2, 13).tolist(),
            "mean_max_probability": np.linspace(0.95, 0.8, 13).tolist(),
            "entropy_mean": np.linspace(0.1, 0.5, 13).tolist(),
        }
    else:
        points = ["test", "shuffled_words", "random_words"]
        far = {
            "axis": "set",
            "accuracy": [0.85, 0.85, None],
            "mean_max_probability": [0.9, 0.9, 0.95],
            "entropy_mean": [0.3, 0.3, 0.2],
        }
    far |= {"points": points, "rows": 200}
    if dropout:
        far |= {f"mc_{k}": [None if v is None else v * 0.9 for v in far[k]] for k in far if
                k in ("accuracy", "mean_max_probability", "entropy_mean")}  # fmt: skip
    return {
        "variant": "any",
        "dataset": dataset,
        "bins": 15,
        "mc_samples": 30 if dropout else None,
        "reliability": reliability,
        "far_from_data": far,
    }


def _record(variant: str, dataset: str = "imdb", seed: int = 0, **metrics: float) -> VariantRecord:
    dropout = any(k.startswith("test/mc_") for k in metrics)
    return VariantRecord(
        variant=variant,
        dataset=dataset,
        run_id=f"{variant}-{seed}",
        params={"seed": str(seed)},
        metrics=metrics,
        tags={},
        curves={"val/loss": [0.5], "train/loss": [0.4]},
        uncertainty=_uncertainty(dataset, dropout, seed),
    )


MC = {"test/accuracy": 0.85, "test/ece": 0.0812, "test/mc_accuracy": 0.86, "test/mc_ece": 0.0523}


@pytest.mark.parametrize(
    ("ece", "mc_ece", "verdict"),
    [
        (0.0812, 0.0523, "was better calibrated than"),
        (0.0523, 0.0812, "was less well calibrated than"),
        (0.08121, 0.08119, "was as well calibrated as"),  # equal at the 4 decimals shown
    ],
)
def test_mc_sentence_states_the_verdict_with_both_eces(ece, mc_ece, verdict) -> None:
    record = _record("imdb_dropout", **(MC | {"test/ece": ece, "test/mc_ece": mc_ece}))
    assert mc_sentence(record) == (
        f"imdb_dropout: MC dropout (30 passes) {verdict} its deterministic prediction here, "
        f"ECE {mc_ece:.4f} with MC dropout vs {ece:.4f} without; accuracy 0.8600 with it, "
        "0.8500 without."
    )


def test_far_from_data_sentences_say_whether_confidence_falls() -> None:
    digits = _record("mnist_cnn", "mnist", **{"test/ece": 0.1})
    # Least accurate at 180°: confidence 0.95 upright, 0.80 there, above accuracy 0.20.
    assert rotation_sentence([digits]).startswith(
        "Far from the data (test digits rotated 0-180°), mean max-probability falls from "
        "upright to each variant's least accurate angle; at that angle it stays above "
        "accuracy: mnist_cnn 0.9500 upright (accuracy 0.9000) to 0.8000 "
        "at 180° (accuracy 0.2000)."
    )
    dropout = _record("mnist_cnn_dropout", "mnist", **(MC | {"test/ece": 0.1}))
    assert rotation_sentence([digits, dropout]).startswith(
        "Far from the data (test digits rotated 0-180°), mean max-probability falls for both "
        "variants from upright to each variant's least accurate angle; at that angle it stays "
        "above accuracy for both variants: mnist_cnn 0.9500 upright (accuracy 0.9000) to "
        "0.8000 at 180° (accuracy 0.2000); mnist_cnn_dropout 0.9500 upright (accuracy 0.9000) "
        "to 0.8000 at 180° (accuracy 0.2000), MC predictive entropy 0.0900 to 0.4500 nats "
        "(rising)."
    )
    reviews = _record("imdb_dense", **{"test/ece": 0.1})
    dropout = _record("imdb_dropout", **MC)
    assert far_sentence("imdb", [reviews, dropout]) == (
        "Far from the data, mean confidence on imdb does not fall for either variant from "
        "test reviews to reviews of random vocabulary words: imdb_dense 0.9000 to 0.9500; "
        "imdb_dropout 0.9000 to 0.9500 (MC dropout 0.8100 to 0.8550); with their words "
        "shuffled they score as the originals (a bag-of-words model cannot see word order)."
    )


def test_section_uses_each_variants_first_seed_and_only_runs_that_measured() -> None:
    runs = [
        _record("imdb_dropout", seed=1, **(MC | {"test/ece": 0.2})),
        _record("imdb_dropout", seed=0, **MC),
        _record("imdb_dense", **{"test/ece": 0.1, "test/mc_error_auroc": math.nan}),
        _record("imdb_l2", **{"test/accuracy": 0.8}),  # logged before calibration existed
    ]
    section = calibration_section("imdb", runs)
    assert section.columns == COLUMNS + MC_COLUMNS
    assert [row["variant"] for row in section.rows] == ["imdb_dropout", "imdb_dense"]
    assert section.rows[0]["test/ece"] == MC["test/ece"]  # seed 0's, not seed 1's 0.2
    assert cell(section.rows[1]["test/mc_error_auroc"]) == "-"
    assert "first seed (0) of 2" in section.intro
    assert list(section.figures) == FIGURES["imdb"]
    for png in section.figures.values():
        assert Image.open(io.BytesIO(png)).size[0] > 400
    assert calibration_section("imdb", [runs[-1]]) is None
    # Without a dropout variant, no MC columns and no MC sentence.
    plain = calibration_section("mnist", [_record("mnist_cnn", "mnist", **{"test/ece": 0.1})])
    assert plain.columns == COLUMNS and len(plain.findings) == 1
    assert list(plain.figures) == FIGURES["mnist"]


def test_uncertainty_json_is_read_from_the_run_a_reused_run_stands_for(tmp_path) -> None:
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.create_experiment("imdb", artifact_location=(tmp_path / "a").as_uri())
    common = {TOOL_TAG: "p1", "dataset": "imdb"}
    parent = client.create_run(experiment, tags=common | {"role": "pipeline"}).info.run_id

    def variant(name: str, **tags: str) -> str:
        tags = common | {"role": "variant", "variant": name, "mlflow.parentRunId": parent} | tags
        return client.create_run(experiment, tags=tags).info.run_id

    document = _uncertainty("imdb", dropout=True)
    trained = variant("imdb_dropout")
    client.log_dict(trained, document, UNCERTAINTY_FILE)
    reused = variant("imdb_dropout", **{REUSED_FROM_TAG: trained})
    older = variant("imdb_dense")
    reused_older = variant("imdb_dense", **{REUSED_FROM_TAG: older})
    for run_id in (parent, trained, reused, older, reused_older):
        client.set_terminated(run_id)
    assert client.list_artifacts(reused) == []  # nothing of its own to find

    record = load_pipeline(client, parent)
    found = {r.run_id: r.uncertainty for r in record.variants["imdb"]}
    assert found == {trained: document, reused: document, older: None, reused_older: None}


def test_section_rows_are_the_mlflow_metrics(smoke_run, smoke_config) -> None:
    client = client_for(smoke_config)
    report = build_report(load_pipeline(client, smoke_run.parent_run_ids["imdb"]))
    page = smoke_run.report.read_text()
    assert set(report.calibration) == {"imdb", "mnist"}
    for dataset, section in report.calibration.items():
        dropout = dataset == "imdb"  # imdb_dropout; no default MNIST variant has dropout
        assert section.columns == COLUMNS + (MC_COLUMNS if dropout else [])
        names = {o.variant for o in smoke_run.outcomes if o.dataset == dataset}
        assert {row["variant"] for row in section.rows} == names
        for row in section.rows:
            # Only the dropout variant has MC measures; every other cell has a value.
            has_mc = row["variant"] == "imdb_dropout"
            for _, key in section.columns[1:]:
                assert (row[key] is None) == (key.startswith("test/mc_") and not has_mc), key
        assert section.rows[0]["variant"] in page


def test_section_figures_are_embedded_and_written(smoke_run) -> None:
    page = smoke_run.report.read_text()
    markdown = (smoke_run.report.parent / "report.md").read_text()
    assert page.count("<h3>Calibration and uncertainty</h3>") == 2
    for dataset, names in FIGURES.items():
        for name in names:
            (uri,) = re.findall(rf"<img alt='{name}' src='data:image/png;base64,([^']+)'>", page)
            image = Image.open(io.BytesIO(base64.b64decode(uri)))
            assert image.size[0] > 400 and image.size[1] > 200, name
            assert (smoke_run.report.parent / name).read_bytes() == base64.b64decode(uri)
            assert f"![{name}]({name})" in markdown
        # Each data set's section sits in its part of the page, after its own heading.
        heading = f"<h2>{dataset}: curves and details</h2>"
        assert page.index(heading) < page.index(f"<img alt='{names[0]}'")


def test_section_rows_hold_each_runs_values_and_the_page_formats_them() -> None:
    plain = _record(
        "imdb_dense",
        **{"test/accuracy": 0.8, "test/ece": 0.12345, "test/brier": 0.2, "test/nll": 0.5},
    )
    dropout = _record("imdb_dropout", **(MC | {"test/brier": 0.19, "test/nll": float("nan")}))
    section = calibration_section("imdb", [plain, dropout])
    rows = {row["variant"]: row for row in section.rows}
    assert rows["imdb_dense"]["test/ece"] == 0.12345
    assert rows["imdb_dense"]["test/mc_ece"] is None  # no dropout: no MC measures
    assert rows["imdb_dropout"]["test/mc_ece"] == 0.0523
    page = to_html(section)
    assert "<td>imdb_dense</td><td>0.8000</td><td>0.1235</td>" in page  # 4 decimals
    assert "<td>0.0523</td>" in page
    assert math.isnan(rows["imdb_dropout"]["test/nll"])


def test_mc_sentence_on_the_page_uses_the_runs_ece_and_mc_ece(smoke_run, smoke_config) -> None:
    """The verdict's wording is tested on hand-made cases above; here: the page states the
    dropout run's own ECEs, as MLflow holds them."""
    metrics = client_for(smoke_config).get_run(smoke_run.variants["imdb_dropout"].run_id).data
    ece, mc_ece = metrics.metrics["test/ece"], metrics.metrics["test/mc_ece"]
    page = smoke_run.report.read_text()
    (expected,) = [
        html.unescape(s) for s in re.findall(r"<li>(imdb_dropout: MC dropout[^<]*)", page)
    ]
    assert f"ECE {mc_ece:.4f} with MC dropout vs {ece:.4f} without" in expected
    assert f"<li>{html.escape(expected)}" in page
    assert page.count("its deterministic prediction here") == 1  # only the dropout variant
    record = load_pipeline(client_for(smoke_config), smoke_run.parent_run_ids["imdb"])
    assert f"- {expected}" in to_markdown(build_report(record))


def test_markdown_puts_the_mc_dropout_columns_in_a_table_of_their_own() -> None:
    """Prefect's artifact view clips a wide table: five columns, then the variant and the
    six MC dropout columns for the variants that have them."""
    from keras_variants.reporting import calibration_report

    dense = {"variant": "imdb_dense"} | {k: 0.5 for _, k in COLUMNS[1:]}
    dense |= {k: None for _, k in MC_COLUMNS}
    dropout = {"variant": "imdb_dropout"} | {k: 0.25 for _, k in COLUMNS[1:] + MC_COLUMNS}
    section = calibration_report.CalibrationSection(
        "intro", COLUMNS + MC_COLUMNS, [dense, dropout], []
    )
    lines = calibration_report.to_markdown(section)
    assert lines[4:12] == [
        "| variant | test accuracy | ECE | Brier | NLL |",
        "| --- | --- | --- | --- | --- |",
        "| imdb_dense | 0.5000 | 0.5000 | 0.5000 | 0.5000 |",
        "| imdb_dropout | 0.2500 | 0.2500 | 0.2500 | 0.2500 |",
        "",
        "| variant | MC accuracy | MC ECE | MC mean predictive entropy (nats) | MC error AUROC "
        "of entropy | MC accuracy, 10% most uncertain | MC accuracy, 10% least uncertain |",
        "|" + " --- |" * 7,
        "| imdb_dropout |" + " 0.2500 |" * 6,
    ]
