"""What the report concludes from a pipeline run's records: runs grouped by variant (and
sweep point) across seeds, sentences about each, the lecture's claims decided, and which
value of each swept setting did best.

Pure functions of :class:`~keras_variants.tracking.records.VariantRecord` lists; no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np

from keras_variants.studies.claims import (
    ALPHA,
    LECTURE_CLAIMS,
    MARGINS,
    MEASURES,
    Claim,
    Decided,
    decide_claim,
)
from keras_variants.studies.sequential import RULE, decide_sequentially, look_sizes, spent_alpha
from keras_variants.studies.sources import load_sources
from keras_variants.studies.study import run_measures
from keras_variants.tracking.records import VariantRecord

BASELINE = {"imdb": "imdb_dense", "mnist": "mnist_dense"}


@dataclass(frozen=True)
class Group:
    """The runs of one variant (or sweep point), one per seed, and their mean."""

    label: str
    runs: list[VariantRecord]
    mean: VariantRecord  # curves and metrics averaged over the seeds
    spread: dict[str, np.ndarray]  # curve or metric -> standard deviation across seeds

    @property
    def seeds(self) -> int:
        return len(self.runs)


def groups(records: list[VariantRecord]) -> list[Group]:
    """Records grouped by label, in the order their labels first appear."""
    by_label: dict[str, list[VariantRecord]] = {}
    for record in records:
        by_label.setdefault(record.label, []).append(record)
    return [_group(label, runs) for label, runs in by_label.items()]


def _group(label: str, runs: list[VariantRecord]) -> Group:
    epochs = min(len(r.curves["val/loss"]) for r in runs)
    curves = {k: np.array([r.curves[k][:epochs] for r in runs]) for k in runs[0].curves}
    metrics = {
        k: np.array([r.metrics[k] for r in runs])
        for k in runs[0].metrics
        if all(k in r.metrics for r in runs)
    }
    mean = replace(
        runs[0],
        variant=label,
        curves={k: v.mean(axis=0).tolist() for k, v in curves.items()},
        metrics={k: float(v.mean()) for k, v in metrics.items()},
    )
    spread = {k: v.std(axis=0, ddof=1) if len(runs) > 1 else v[0] * 0 for k, v in curves.items()}
    spread |= {k: np.asarray(v.std(ddof=1) if len(runs) > 1 else 0.0) for k, v in metrics.items()}
    return Group(label, runs, mean, spread)


def _trend(record: VariantRecord) -> str:
    """Where the lowest validation loss came: the run's ``validation_loss_min_epoch``, for a
    group the mean of its seeds' (the number the table and the claims show), not the
    lowest point of the mean curve."""
    epochs = len(record.curves["val/loss"])
    epoch = record.metrics.get("validation_loss_min_epoch")
    if epoch is None:  # a run logged before the metric existed
        epoch = int(np.argmin(record.curves["val/loss"])) + 1
    if epoch < epochs:
        shown = f"{int(epoch)}" if float(epoch).is_integer() else f"{epoch:.1f}"
        return f"starts to overfit after epoch {shown} of {epochs}"
    return f"was still improving at its last epoch ({epochs})"


def findings_for(dataset: str, records: list[VariantRecord]) -> list[str]:
    """Sentences derived from the (mean) curves and metrics: where each variant starts to
    overfit, how its final validation loss compares with the baseline's, who wins."""
    if not records:
        return []
    lines = []
    by_name = {r.variant: r for r in records}
    baseline = by_name.get(BASELINE[dataset])
    for r in records:
        lowest = r.metrics.get("val/loss_min", min(r.curves["val/loss"]))  # a group: mean
        line = f"{r.variant} {_trend(r)} (lowest validation loss {lowest:.4f})"
        if baseline is not None and r is not baseline:
            delta = r.curves["val/loss"][-1] - baseline.curves["val/loss"][-1]
            line += (
                f"; {baseline.variant} {_trend(baseline)}, and its final "
                f"validation loss is {abs(delta):.4f} {'higher' if delta < 0 else 'lower'}"
            )
        lines.append(line + ".")
    best_val = max(records, key=lambda r: r.metrics.get("val/accuracy", 0.0))
    best_test = max(records, key=lambda r: r.metrics.get("test/accuracy", 0.0))
    lines.append(
        f"Best on validation accuracy: {best_val.variant} "
        f"({best_val.metrics['val/accuracy']:.4f}); best test accuracy: {best_test.variant} "
        f"({best_test.metrics['test/accuracy']:.4f})."
    )
    return lines


def seed_table(records: list[VariantRecord]) -> dict[str, dict[int, dict[str, float]]]:
    """label -> seed -> the measures a study compares (study.run_measures)."""
    table: dict[str, dict[int, dict[str, float]]] = {}
    for r in records:
        table.setdefault(r.label, {})[r.seed] = run_measures(r.metrics, r.curves["val/loss"])
    return table


def looks_of(params: Mapping[str, str]) -> tuple[int, ...] | None:
    """The seeds at each look of a study that added seeds until its claims were decided
    (its parent runs' ``seeds.*`` params, ``SeedPlan.params``); None for fixed seeds."""
    if params.get("seeds.rule") != "auto":
        return None
    return look_sizes(int(params["seeds.first"]), int(params["seeds.cap"]))


def lecture_verdicts(
    records: list[VariantRecord], looks: tuple[int, ...] | None = None
) -> list[Decided]:
    """Every lecture claim whose two variants were run, decided from the paired seeds: at
    their first deciding look when seeds were added in ``looks``."""
    table = seed_table(records)
    return [
        decide_sequentially(claim, table, looks) if looks else decide_claim(claim, table)
        for claim in LECTURE_CLAIMS
        if claim.subject in table and claim.baseline in table
    ]


def claims_rule(looks: tuple[int, ...] | None) -> str:
    """How the claims were decided, in words: the intervals, the margins, the looks."""
    margins = ", ".join(f"{MEASURES[m]} {v:g}" for m, v in MARGINS.items())
    text = (
        "Each claim is decided by the mean difference of its measure between two variants, "
        "paired by seed, and its t-interval: holds when the interval lies on the claimed "
        "side of zero; does not hold when it lies on the other side, or when the difference "
        "is practically nil (two one-sided tests, TOST: the interval at twice the error "
        f"rate lies within the measure's equivalence margin: {margins}); inconclusive when "
        "it spans zero and reaches past the margin, or fewer than 3 seeds pair up."
    )
    if not looks:
        return text + f" Intervals at {1 - ALPHA:.0%}: one look at every seed."
    share = spent_alpha(looks)[0]
    return text + (
        f" Seeds were added until every claim was decided (--seeds auto): looks at "
        f"{', '.join(map(str, looks))} seeds, each claim decided at its first deciding "
        f"look; the error rate {ALPHA:g} is spread over the looks by {RULE}: "
        f"{share:.4g} each, intervals at {100 * (1 - share):.4g}%."
    )


SWEEP_MEASURE = "val/loss_min"  # chosen on validation, like the challenger


def sweep_findings(records: list[VariantRecord]) -> list[str]:
    """Per swept variant: which value did best on the lowest validation loss, and whether
    each other value's difference from it is within noise (paired by seed)."""
    table = seed_table(records)
    by_variant: dict[str, list[str]] = {}
    for r in records:
        labels = by_variant.setdefault(r.variant, [])
        if r.label not in labels:
            labels.append(r.label)
    lines = []
    for variant, labels in by_variant.items():
        if len(labels) < 2:
            continue

        def mean(label: str) -> float:
            return float(np.mean([m[SWEEP_MEASURE] for m in table[label].values()]))

        best = min(labels, key=mean)
        parts = []
        for other in (label for label in labels if label != best):
            claim = Claim("", "", SWEEP_MEASURE, other, best, "higher")
            decided = decide_claim(claim, table)
            noise = {
                "holds": "worse beyond noise",
                "does not hold": "no different",  # the same on every seed
                "inconclusive": "within noise",
            }[decided.verdict]
            parts.append(
                f"{other}: {mean(other):.4f}, {noise} (paired difference "
                f"{decided.mean_difference:+.4f}, 95% interval {_interval(decided)}, "
                f"{decided.n} seeds)"
            )
        lines.append(
            f"{variant}: the best {MEASURES[SWEEP_MEASURE]} came with {best} "
            f"({mean(best):.4f}); " + "; ".join(parts) + "."
        )
    return lines


def _signed(value: float, measure: str) -> str:
    """A difference of ``measure``: epochs to one decimal, losses and accuracies to four."""
    return f"{value:+.1f}" if measure == "validation_loss_min_epoch" else f"{value:+.4f}"


def _interval(decided: Decided) -> str:
    if np.isnan(decided.low):
        return "n/a"
    measure = decided.claim.measure
    level = "" if decided.level == 1 - ALPHA else f" at {100 * decided.level:.2f}%"
    return f"[{_signed(decided.low, measure)}, {_signed(decided.high, measure)}]{level}"


def verdict_row(decided: Decided) -> dict[str, str]:
    """One row of the report's "Lecture claims" table (``number``: the claim's alone)."""
    claim = decided.claim
    entry = load_sources().for_claim(claim.number)
    return {
        "number": claim.number,
        "claim": f"{claim.number}. {claim.statement}",
        "measure": f"{MEASURES[claim.measure]}: {claim.subject} - {claim.baseline} "
        f"(expected {'> 0' if claim.expected == 'higher' else '< 0'})",
        "difference": _signed(decided.mean_difference, claim.measure) if decided.n else "-",
        "interval": _interval(decided),
        "seeds": f"{decided.n} ({decided.look})" if decided.look else str(decided.n),
        "verdict": decided.verdict,
        "why": decided.why,
        "book": (entry.book_says_otherwise if entry else None) or "-",
    }
