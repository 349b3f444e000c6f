"""The model card of a registered version: what the model is, how it was measured, how it
behaves away from its data, its limitations stated from measurements, the gate's decision
and how to call it.

Pure: facts in (:class:`CardFacts`), text out (:func:`card_markdown`,
:func:`limitations`, :func:`card_json`). Gathering the facts from MLflow and writing the
card there: :mod:`.model_card_store`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from keras_variants.data.layout import IMAGE_LAYOUT
from keras_variants.monitoring.coverage import (
    clean_width_rows,
    clean_width_verdict,
    coverage_rows,
    coverage_verdict,
    markdown_table,
)
from keras_variants.monitoring.estimate import method_name
from keras_variants.tracking.store import scoring_experiment

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
    method = method_name(m["estimator"], m.get("point_estimator"))
    return [
        f"`variants score` estimates the accuracy of unlabelled rows ({method}) with a "
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
