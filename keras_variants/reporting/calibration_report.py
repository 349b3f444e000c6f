"""The report's "Calibration and uncertainty" part, per data set: calibration and Monte
Carlo dropout metrics per variant, reliability diagrams, the far-from-data plots, and
sentences that state what they show.

Built from :class:`~keras_variants.tracking.records.VariantRecord` lists (MLflow metrics and each
run's ``uncertainty.json``, the layout of ``uncertainty.uncertainty_summary``); rendering is
pure. With several seeds it shows each variant's run with its first seed: one run's
reliability bins and far-from-data scores, not an average of them. The plots are drawn in
:mod:`keras_variants.reporting.calibration_figures`.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field

from keras_variants.reporting.calibration_figures import cell, figures
from keras_variants.reporting.plots import png_uri
from keras_variants.tracking.records import VariantRecord

TITLE = "Calibration and uncertainty"
COLUMNS = [
    ("variant", "variant"),
    ("test accuracy", "test/accuracy"),
    ("ECE", "test/ece"),
    ("Brier", "test/brier"),
    ("NLL", "test/nll"),
]
MC_COLUMNS = [  # variants with dropout; shown when a data set has one
    ("MC accuracy", "test/mc_accuracy"),
    ("MC ECE", "test/mc_ece"),
    ("MC mean predictive entropy (nats)", "test/mc_entropy_mean"),
    ("MC error AUROC of entropy", "test/mc_error_auroc"),
    ("MC accuracy, 10% most uncertain", "test/mc_accuracy_most_uncertain_10pct"),
    ("MC accuracy, 10% least uncertain", "test/mc_accuracy_least_uncertain_10pct"),
]
INTRO = (
    "On the test split. ECE: expected calibration error of the top label over 15 "
    "equal-width confidence bins (0: confidence matches accuracy); Brier score and NLL "
    "(negative log-likelihood): lower is better."
)
MC_INTRO = (
    " Variants with dropout also predict by Monte Carlo (MC) dropout, the mean of "
    "{samples} passes with dropout on: its accuracy and ECE, the mean entropy of that "
    "prediction, how well the entropy flags wrong predictions (AUROC: 1 when every wrong "
    "prediction is more uncertain than every right one, 0.5 no better than chance) and "
    "the accuracy on the 10% of test rows it is most and least uncertain about."
)


@dataclass
class CalibrationSection:
    """One data set's part: a row per variant, the sentences and the figures."""

    intro: str
    columns: list[tuple[str, str]]
    rows: list[dict[str, object]]  # metric key -> the run's MLflow value (None if absent)
    findings: list[str]  # MC dropout vs deterministic per dropout variant; far from the data
    figures: dict[str, bytes] = field(default_factory=dict)  # file name -> PNG


def first_seed_runs(records: list[VariantRecord]) -> list[VariantRecord]:
    """One run per variant (or sweep point), the one with its lowest seed, in the order
    the variants first appear."""
    by_label: dict[str, list[VariantRecord]] = {}
    for record in records:
        by_label.setdefault(record.label, []).append(record)
    return [min(runs, key=lambda r: r.seed) for runs in by_label.values()]


def _has_mc(record: VariantRecord) -> bool:
    return "test/mc_ece" in record.metrics


def calibration_section(dataset: str, records: list[VariantRecord]) -> CalibrationSection | None:
    """The part for one data set's records; None when no run measured calibration (runs
    logged before it existed)."""
    runs = [r for r in first_seed_runs(records) if "test/ece" in r.metrics]
    if not runs:
        return None
    dropout = [r for r in runs if _has_mc(r)]
    intro = INTRO
    if dropout:
        samples = sorted({str((r.uncertainty or {}).get("mc_samples") or "T") for r in dropout})
        intro += MC_INTRO.format(samples=" or ".join(samples))
    seeds = {r.seed for r in records}
    if len(seeds) > 1:
        intro += (
            f" Each variant's run with its first seed ({min(seeds)}) of {len(seeds)}; the "
            "other seeds' runs carry the same measures in MLflow."
        )
    columns = COLUMNS + (MC_COLUMNS if dropout else [])
    rows = [
        {"variant": r.label} | {key: r.metrics.get(key) for _, key in columns[1:]} for r in runs
    ]
    findings = [mc_sentence(r) for r in dropout]
    far = [r for r in runs if r.uncertainty and r.uncertainty.get("far_from_data")]
    if far:
        findings.append(
            rotation_sentence(far) if dataset == "mnist" else far_sentence(dataset, far)
        )
    return CalibrationSection(intro, columns, rows, findings, figures(dataset, runs))


def calibration_sections(variants: dict[str, list[VariantRecord]]) -> dict[str, CalibrationSection]:
    """:func:`calibration_section` of every data set that has one."""
    sections = {d: calibration_section(d, records) for d, records in variants.items()}
    return {d: section for d, section in sections.items() if section is not None}


# Sentences ---------------------------------------------------------------------------------


def _samples(record: VariantRecord) -> str:
    samples = (record.uncertainty or {}).get("mc_samples")
    return f"MC dropout ({samples} passes)" if samples else "MC dropout"


def mc_sentence(record: VariantRecord) -> str:
    """Whether MC dropout was better calibrated than the same model's deterministic
    prediction, by ECE at the 4 decimals shown."""
    ece, mc_ece = record.metrics["test/ece"], record.metrics["test/mc_ece"]
    if round(mc_ece, 4) < round(ece, 4):
        verdict = "was better calibrated than"
    elif round(mc_ece, 4) > round(ece, 4):
        verdict = "was less well calibrated than"
    else:
        verdict = "was as well calibrated as"
    accuracy = ""
    if "test/mc_accuracy" in record.metrics and "test/accuracy" in record.metrics:
        accuracy = (
            f"; accuracy {record.metrics['test/mc_accuracy']:.4f} with it, "
            f"{record.metrics['test/accuracy']:.4f} without"
        )
    return (
        f"{record.label}: {_samples(record)} {verdict} its deterministic prediction here, "
        f"ECE {mc_ece:.4f} with MC dropout vs {ece:.4f} without{accuracy}."
    )


def _falls(before: float, after: float) -> bool:
    return round(after, 4) < round(before, 4)


def rotation_sentence(records: list[VariantRecord]) -> str:
    """Rotated digits: does each variant's mean max-probability fall from upright digits
    to the angle where it is least accurate, and does it stay above accuracy there?"""
    clauses, falls, over = [], 0, 0
    for record in records:
        far = record.uncertainty["far_from_data"]
        angles, accuracy = far["points"], far["accuracy"]
        confidence = far["mean_max_probability"]
        worst = min(range(1, len(angles)), key=lambda i: accuracy[i])
        falls += _falls(confidence[0], confidence[worst])
        over += confidence[worst] > accuracy[worst]
        clause = (
            f"{record.label} {confidence[0]:.4f} upright (accuracy {accuracy[0]:.4f}) to "
            f"{confidence[worst]:.4f} at {angles[worst]}° (accuracy {accuracy[worst]:.4f})"
        )
        if "mc_entropy_mean" in far:
            entropy = far["mc_entropy_mean"]
            clause += (
                f", MC predictive entropy {entropy[0]:.4f} to {entropy[worst]:.4f} nats "
                f"({'rising' if entropy[worst] > entropy[0] else 'not rising'})"
            )
        clauses.append(clause)
    verdict = _verdict(falls, len(records), "falls", "does not fall")
    overconfident = _verdict(
        over, len(records), "stays above accuracy", "is no higher than accuracy"
    )
    return (
        f"Far from the data (test digits rotated 0-180°), mean max-probability {verdict} "
        "from upright to each variant's least accurate angle; at that angle it "
        f"{overconfident}: " + "; ".join(clauses) + "."
    )


def far_sentence(dataset: str, records: list[VariantRecord]) -> str:
    """Reviews moved away from the data: does mean confidence fall from test reviews to
    reviews of random vocabulary words? And do shuffled words score as the originals?"""
    clauses, shuffled, falls = [], [], 0
    for record in records:
        far = record.uncertainty["far_from_data"]
        confidence = dict(zip(far["points"], far["mean_max_probability"], strict=True))
        test, random = confidence["test"], confidence["random_words"]
        falls += _falls(test, random)
        clause = f"{record.label} {test:.4f} to {random:.4f}"
        if "mc_mean_max_probability" in far:
            mc = dict(zip(far["points"], far["mc_mean_max_probability"], strict=True))
            clause += f" (MC dropout {mc['test']:.4f} to {mc['random_words']:.4f})"
        clauses.append(clause)
        if round(confidence["shuffled_words"], 4) != round(test, 4):
            shuffled.append(f"{record.label} {confidence['shuffled_words']:.4f}")
    verdict = _verdict(falls, len(records), "falls", "does not fall")
    order = (
        "; with their words shuffled they score as the originals (a bag-of-words model "
        "cannot see word order)"
        if not shuffled
        else "; with their words shuffled: " + ", ".join(shuffled)
    )
    return (
        f"Far from the data, mean confidence on {dataset} {verdict} from test reviews to "
        f"reviews of random vocabulary words: " + "; ".join(clauses) + order + "."
    )


def _verdict(hits: int, total: int, yes: str, no: str) -> str:
    """``yes`` or ``no`` for how many of ``total`` variants: "falls for both variants",
    "does not fall for any variant", "falls for 1 of 3 variants"; alone for one variant."""
    if total == 1:
        return yes if hits else no
    if hits == total:
        return f"{yes} for {'both variants' if total == 2 else f'all {total} variants'}"
    if hits == 0:
        return f"{no} for {'either variant' if total == 2 else 'any variant'}"
    return f"{yes} for {hits} of {total} variants"


# Figures -----------------------------------------------------------------------------------


# Rendering ---------------------------------------------------------------------------------


def to_markdown(section: CalibrationSection, embed_images: bool = True) -> list[str]:
    """The section's markdown lines, the plots as data URIs or file names. The MC dropout
    columns get a table of their own (the variants that have them): Prefect's artifact view
    clips a wide table."""
    lines = [f"### {TITLE}", "", section.intro, ""]
    tables = [section.columns[: len(COLUMNS)]]
    if len(section.columns) > len(COLUMNS):
        tables.append([section.columns[0], *section.columns[len(COLUMNS) :]])
    for columns in tables:
        mc = columns is not tables[0]
        lines.append("| " + " | ".join(h for h, _ in columns) + " |")
        lines.append("|" + " --- |" * len(columns))
        lines += [
            "| " + " | ".join(cell(row[k]) for _, k in columns) + " |"
            for row in section.rows
            if not mc or any(row[k] is not None for _, k in columns[1:])
        ]
        lines.append("")
    lines += [*(f"- {f}" for f in section.findings), ""]
    lines += [
        f"![{name}]({png_uri(data) if embed_images else name})"
        for name, data in section.figures.items()
    ]
    return [*lines, ""]


def to_html(section: CalibrationSection) -> str:
    """The section as an HTML fragment, the plots embedded."""
    parts = [f"<h3>{TITLE}</h3><p>{html.escape(section.intro)}</p>"]
    parts.append("<table class='calibration'><tr>")
    parts += [f"<th>{html.escape(h)}</th>" for h, _ in section.columns]
    parts.append("</tr>")
    for row in section.rows:
        cells = "".join(f"<td>{html.escape(cell(row[k]))}</td>" for _, k in section.columns)
        parts.append(f"<tr>{cells}</tr>")
    parts.append("</table><ul>")
    parts += [f"<li>{html.escape(f)}</li>" for f in section.findings]
    parts.append("</ul>")
    parts += [
        f"<img alt='{html.escape(name)}' src='{png_uri(data)}'>"
        for name, data in section.figures.items()
    ]
    return "".join(parts)
