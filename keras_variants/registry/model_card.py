"""The model card of a registered version: what the model is, how it was measured, how it
behaves away from its data, its limitations stated from measurements, the gate's decision
and how to call it.

:func:`card_markdown` and :func:`limitations` are pure (facts in, text out);
:func:`write_card` gathers the facts from MLflow and writes the card as the version's
description (rendered by the MLflow UI) and as ``model_card.md`` / ``model_card.json``
artifacts of the version's run. It is written at registration and again when the gate
decides.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from keras_variants.data.layout import IMAGE_LAYOUT
from keras_variants.monitoring.coverage import (
    clean_width_rows,
    clean_width_verdict,
    coverage_rows,
    coverage_verdict,
    markdown_table,
)
from keras_variants.monitoring.stored import load_measurement
from keras_variants.tracking.records import load_uncertainty
from keras_variants.tracking.store import scoring_experiment
from keras_variants.tracking.ui_links import experiment_runs_page, mlflow_ui_for

log = logging.getLogger(__name__)

CARD_FILE = "model_card.md"
CARD_JSON = "model_card.json"
DESCRIPTION_LIMIT = 5_000  # characters MLflow's SQL stores keep of a description
TRAINING_PARAMS = (
    "optimizer",
    "learning_rate",
    "epochs",
    "batch_size",
    "l2",
    "dropout",
    "mc_samples",
    "precision",
    "seed",
    "profile",
    "train_rows",
    "validation_rows",
    "test_rows",
)
TEST_METRICS = {  # key -> how the card names it
    "test/accuracy": "accuracy",
    "test/auc": "AUC",
    "test/ece": "ECE (expected calibration error)",
    "test/brier": "Brier score",
    "test/nll": "NLL (log loss)",
}


@dataclass(frozen=True)
class CardFacts:
    """Everything a card states, as read from the registry and the version's run."""

    model: str
    version: str
    variant: str
    label: str
    dataset: str
    run_id: str
    architecture: str
    parameter_count: str
    training: dict[str, str]
    data_sha256: dict[str, str]  # file -> SHA-256
    test: dict[str, float]  # "test/accuracy" -> value
    across_seeds: dict[str, float] = field(default_factory=dict)  # mean, ci95_low/high, n
    far_from_data: dict[str, Any] | None = None  # uncertainty.json's "far_from_data"
    mc_samples: int | None = None
    decision: str | None = None
    reason: str | None = None
    tracking_uri: str = ""
    monitoring: dict[str, Any] | None = None  # the measurement on the known shifts
    scoring_page: str | None = None  # the model's scoring experiment in the MLflow UI


def limitations(facts: CardFacts) -> list[str]:
    """Sentences about where the model should not be trusted, each from a measurement."""
    out = []
    accuracy = facts.test.get("test/accuracy")
    far = facts.far_from_data or {}
    points = far.get("points", [])
    accuracies, confidences = far.get("accuracy", []), far.get("mean_max_probability", [])
    if far.get("axis") == "angle_degrees" and accuracy is not None:
        # The turn where the model is most overconfident: accuracy fell, confidence did not.
        worst = None
        for angle, acc, conf in zip(points, accuracies, confidences, strict=False):
            overconfident = acc is not None and acc < accuracy - 0.2 and conf - acc > 0.2
            if overconfident and (worst is None or conf - acc > worst[2] - worst[1]):
                worst = (angle, acc, conf)
        if worst:
            out.append(
                f"at {worst[0]:g}° rotation accuracy falls to {worst[1]:.2f} (test "
                f"{accuracy:.2f}) while mean confidence stays {worst[2]:.2f}"
            )
    if far.get("axis") == "set":
        by_set = dict(zip(points, zip(accuracies, confidences, strict=False), strict=False))
        if "random_words" in by_set and by_set["random_words"][1] > 0.6:
            out.append(
                "on reviews of random vocabulary words (no sentiment at all) mean confidence "
                f"is {by_set['random_words'][1]:.2f}; 0.50 would say it cannot tell"
            )
        shuffled = by_set.get("shuffled_words", (None, None))[0]
        if shuffled is not None and accuracy is not None and abs(shuffled - accuracy) < 0.02:
            out.append(
                f"with each review's words shuffled accuracy is {shuffled:.2f} (test "
                f"{accuracy:.2f}): it ignores word order, so negation and sarcasm are lost"
            )
    ece = facts.test.get("test/ece")
    if ece is not None and ece > 0.05:
        out.append(f"its probabilities are off by {ece:.3f} on average (ECE): read them loosely")
    rows = facts.training.get("train_rows")
    if facts.training.get("profile") not in (None, "full"):
        out.append(
            f"trained on the {facts.training['profile']} profile ({rows} training rows, "
            f"{facts.training.get('epochs')} epochs): for checks, not for use"
        )
    return out


def card_markdown(facts: CardFacts) -> str:
    """The card as markdown, the version's description in the MLflow UI."""
    f = facts
    lines = [
        f"# {f.model} v{f.version}: {f.label}",
        "",
        "## Registry decision",
        f"{f.decision}: {f.reason}" if f.decision else "not yet decided by the gate",
        "",
        "## What it is",
        f"- variant `{f.variant}` ({f.architecture}), {f.parameter_count} parameters, "
        f"trained in run `{f.run_id}`",
        "- training: " + ", ".join(f"{k} {v}" for k, v in f.training.items()),
        *(f"- data `{file}` sha256 `{sha}`" for file, sha in sorted(f.data_sha256.items())),
        "",
        "## How it was measured",
        "On the test split, as the run's evaluation scored it:",
        "",
        "| measure | value |",
        "| --- | --- |",
        *(f"| {TEST_METRICS[k]} | {f.test[k]:.4f} |" for k in TEST_METRICS if k in f.test),
    ]
    seeds = f.across_seeds
    if {"mean", "ci95_low", "ci95_high", "n"} <= seeds.keys():
        lines += [
            "",
            f"Across {int(seeds['n'])} seeds of `{f.label}`: test accuracy mean "
            f"{seeds['mean']:.4f}, 95% interval [{seeds['ci95_low']:.4f}, "
            f"{seeds['ci95_high']:.4f}].",
        ]
    lines += ["", "## Away from its data", *_far_from_data_lines(f)]
    lines += ["", "## Limitations", *(f"- {s}" for s in limitations(f) or ["none measured"])]
    lines += [
        "",
        "## How to call it",
        *([f"Inputs: {IMAGE_LAYOUT}.", ""] if f.dataset == "mnist" else []),
        "```",
        f"variants predict --model {f.model} --version {f.version} <inputs>",
        f"variants serve --model {f.model} --version {f.version}",
        f"variants score --model {f.model} <file or folder>",
        "```",
        "",
        "## Scoring history",
        f"Every scoring is a run of the MLflow experiment `{scoring_experiment(f.model)}`"
        + (f": {f.scoring_page}" if f.scoring_page else " (made by the first scoring)")
        + "; nothing about a scoring is written on this version.",
        "",
        "## Accuracy estimated without labels",
        *_estimate_lines(f),
    ]
    return "\n".join(lines) + "\n"


def _estimate_lines(f: CardFacts) -> list[str]:
    m = f.monitoring
    if not m or "estimators_tried" not in m:
        return ["No interval was calibrated for this version: `variants score` gives no estimate."]
    header, rows = coverage_rows(m)
    up_to = ", ".join(f"{v} at {k} rows" for k, v in m.get("checked_up_to", {}).items())
    return [
        f"`variants score` estimates the accuracy of unlabelled rows ({m['estimator']}) with a "
        f"{m['level']:.0%} interval: the sampling spread plus the estimate's own error on "
        "known shifts as far from the held-out data (beyond the distance clean rows lie at by "
        "sampling alone). It gives no number for fewer rows than "
        f"the smallest size below or beyond the furthest shift checked ({up_to}). Measured "
        "at registration on shifts each left out of the fitting in turn:",
        "",
        *markdown_table(header, rows),
        "",
        coverage_verdict(m),
        *_clean_width_lines(m),
    ]


def _clean_width_lines(m: dict[str, Any]) -> list[str]:
    """One line, not the report's table: the card is the registry's description, which
    keeps 5,000 characters."""
    _, rows = clean_width_rows(m)
    verdict = clean_width_verdict(m)
    if not rows or verdict is None:
        return []
    widths = ", ".join(f"{r[0]} rows {r[3]} ({r[4]}, held {r[2]})" for r in rows)
    return ["", f"Clean held-out rows, mean width (widest) by rows: {widths}. {verdict}"]


def _far_from_data_lines(f: CardFacts) -> list[str]:
    far = f.far_from_data
    if not far:
        return ["not measured for this run"]
    axis = "rotation (degrees)" if far.get("axis") == "angle_degrees" else "input"
    columns = ["accuracy", "mean_max_probability", "entropy_mean"]
    if f.mc_samples:
        columns += ["mc_accuracy", "mc_mean_max_probability", "mc_entropy_mean"]
    header = [axis, *(c.replace("_", " ") for c in columns)]
    lines = [
        f"On {far.get('rows')} test inputs"
        + (f"; MC dropout with {f.mc_samples} samples in the mc columns:" if f.mc_samples else ":"),
        "",
        "| " + " | ".join(header) + " |",
        "|" + " --- |" * len(header),
    ]
    for i, point in enumerate(far.get("points", [])):
        cells = [str(point).replace("_", " ")]
        for column in columns:
            values = far.get(column) or []
            value = values[i] if i < len(values) else None
            cells.append("-" if value is None or math.isnan(value) else f"{value:.3f}")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def card_json(facts: CardFacts) -> dict[str, Any]:
    """The card's facts and sentences, for programs."""
    return asdict(facts) | {"limitations": limitations(facts)}


def gather(client: MlflowClient, name: str, version: str) -> CardFacts:
    """The facts about version ``version`` of ``name`` from the registry and its run."""
    registered = client.get_model_version(name, version)
    run = client.get_run(registered.run_id)
    params, metrics, tags = run.data.params, run.data.metrics, run.data.tags
    label = tags.get("label", tags.get("variant", ""))
    uncertainty = load_uncertainty(client, run) or {}
    across = {}
    parent = tags.get(MLFLOW_PARENT_RUN_ID)
    if parent:
        summary = client.get_run(parent).data.metrics
        prefix = f"{label}/test/accuracy/"
        across = {k.removeprefix(prefix): v for k, v in summary.items() if k.startswith(prefix)}
    return CardFacts(
        model=name,
        version=str(version),
        variant=tags.get("variant", ""),
        label=label,
        dataset=tags.get("dataset", ""),
        run_id=run.info.run_id,
        architecture=params.get("architecture", "?"),
        parameter_count=params.get("parameter_count", "?"),
        training={k: params[k] for k in TRAINING_PARAMS if k in params},
        data_sha256={
            k.removeprefix("data.").removesuffix(".sha256"): v
            for k, v in tags.items()
            if k.startswith("data.") and k.endswith(".sha256")
        },
        test={k: v for k, v in metrics.items() if k in TEST_METRICS},
        across_seeds=across,
        far_from_data=uncertainty.get("far_from_data"),
        mc_samples=uncertainty.get("mc_samples"),
        decision=registered.tags.get("promotion.decision"),
        reason=registered.tags.get("promotion.reason"),
        tracking_uri=client.tracking_uri,
        monitoring=load_measurement(client, registered),
        scoring_page=_scoring_page(client, name),
    )


def _scoring_page(client: MlflowClient, name: str) -> str | None:
    experiment = client.get_experiment_by_name(scoring_experiment(name))
    if experiment is None:
        return None
    return experiment_runs_page(mlflow_ui_for(client.tracking_uri), experiment.experiment_id)


def write_card(client: MlflowClient, name: str, version: str) -> CardFacts:
    """Write the card of ``name`` version ``version``: its description in the registry
    and ``model_card.md`` / ``model_card.json`` on its run."""
    facts = gather(client, name, version)
    markdown = card_markdown(facts)
    description = markdown
    if len(description) > DESCRIPTION_LIMIT:
        more = f"\n\n(cut here: the whole card is {CARD_FILE} in run {facts.run_id})\n"
        description = description[: DESCRIPTION_LIMIT - len(more)] + more
    client.log_text(facts.run_id, markdown, CARD_FILE)
    client.log_text(facts.run_id, json.dumps(card_json(facts), indent=2), CARD_JSON)
    client.update_model_version(name, version, description=description)
    return facts


_warned: list[str] = []  # a card that cannot be written is said once per process


def try_write_card(client: MlflowClient, name: str, version: str) -> CardFacts | None:
    """:func:`write_card`, never failing its caller (a registration, the gate): a card
    that cannot be written is logged as a warning (once) and None is returned."""
    try:
        return write_card(client, name, version)
    except Exception as exc:  # a missing card must not stop a registration
        message = f"model card of {name} v{version} not written: {type(exc).__name__}: {exc}"
        if not _warned:
            _warned.append(message)
            log.warning(message)
        else:
            log.debug(message)
        return None
