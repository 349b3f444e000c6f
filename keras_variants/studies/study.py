"""Studies: every selected variant (and sweep point) trained once per seed, summarized
across seeds, and the lecture's claims decided from the paired differences.

Pure functions over plain data: parsing ``--seeds`` and ``--set`` (a study's trials are
:mod:`keras_variants.config.trials`), aggregates with confidence intervals, and verdicts.
SciPy does the statistics.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import ValidationError

from keras_variants.config.trials import Sweeps, apply
from keras_variants.config.variants import VARIANTS
from keras_variants.errors import ConfigError

# Fields a sweep may set; the rest (name, data set, architecture, input) define a variant.
SWEEPABLE = ("hidden_units", "l2", "dropout", "optimizer", "learning_rate", "epochs", "batch_size")
AGGREGATED = (
    "test/accuracy",
    "val/loss_min",
    "validation_loss_min_epoch",
    "val/loss_last",
    "val/loss_rise",
)


def parse_seeds(text: str) -> tuple[int, ...]:
    """``"5"`` is seeds 0-4; ``"0,3,7"`` those seeds."""
    try:
        if "," not in text:
            count = int(text)
            if count < 1:
                raise ValueError
            return tuple(range(count))
        seeds = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise ConfigError(
            f"--seeds {text!r}: give a count (5 means seeds 0-4) or a list like 0,3,7"
        ) from None
    if len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise ConfigError(f"--seeds {text!r}: seeds must be distinct and not negative")
    return seeds


def parse_sweep(text: str) -> tuple[str, str, tuple[object, ...]]:
    """``"imdb_dropout.dropout=0.2,0.5"`` as (variant, field, typed values), each value
    checked against the variant's config."""
    target, _, values = text.partition("=")
    name, _, key = target.partition(".")
    if name not in VARIANTS:
        raise ConfigError(
            f"--set {text}: unknown variant {name!r}; choose from {', '.join(VARIANTS)}"
        )
    if key not in SWEEPABLE:
        raise ConfigError(
            f"--set {text}: {key!r} cannot be swept; choose from {', '.join(SWEEPABLE)}"
        )
    if not values:
        raise ConfigError(f"--set {text}: no values; write it as {name}.{key}=VALUE,VALUE")
    typed = []
    for raw in values.split(","):
        value: object = tuple(raw.split("x")) if key == "hidden_units" else raw
        try:
            typed.append(getattr(apply(VARIANTS[name], {key: value}), key))
        except ValidationError as exc:
            reason = exc.errors()[0]["msg"].lower()
            raise ConfigError(f"--set {text}: {key}={raw!r} is not valid ({reason})") from None
    return name, key, tuple(dict.fromkeys(typed))


def parse_sweeps(texts: Sequence[str]) -> Sweeps:
    sweeps: Sweeps = {}
    for text in texts:
        name, key, values = parse_sweep(text)
        sweeps.setdefault(name, {})[key] = values
    return sweeps


def run_measures(
    metrics: Mapping[str, float], validation_loss: Sequence[float]
) -> dict[str, float]:
    """The measures a study compares, from one run's metrics and validation-loss curve."""
    last, lowest = validation_loss[-1], min(validation_loss)
    return {
        "test/accuracy": metrics["test/accuracy"],
        "val/loss_min": lowest,
        "validation_loss_min_epoch": metrics["validation_loss_min_epoch"],
        "val/loss_last": last,
        "val/loss_rise": last - lowest,
    }


@dataclass(frozen=True)
class Summary:
    """One measure of one variant (or sweep point) across seeds."""

    n: int
    mean: float
    std: float  # sample standard deviation; NaN for one seed
    low: float  # 95% confidence interval of the mean (t distribution); NaN for one seed
    high: float


def summarize(values: Sequence[float]) -> Summary:
    data = np.asarray(values, dtype=np.float64)
    n, mean = len(data), float(data.mean())
    if n < 2:
        return Summary(n, mean, math.nan, math.nan, math.nan)
    std = float(data.std(ddof=1))
    if std == 0:
        return Summary(n, mean, 0.0, mean, mean)
    from scipy import stats  # on use: the command line's checks import this module

    low, high = stats.t.interval(0.95, n - 1, loc=mean, scale=stats.sem(data))
    return Summary(n, mean, std, float(low), float(high))


def aggregate(runs: Sequence[tuple[str, Mapping[str, float]]]) -> dict[str, dict[str, Summary]]:
    """Per label, every measure summarized across its runs (one per seed)."""
    by_label: dict[str, list[Mapping[str, float]]] = {}
    for label, measures in runs:
        by_label.setdefault(label, []).append(measures)
    return {
        label: {m: summarize([r[m] for r in rows]) for m in AGGREGATED if all(m in r for r in rows)}
        for label, rows in by_label.items()
    }


def summary_metrics(summaries: Mapping[str, Mapping[str, Summary]]) -> dict[str, float]:
    """MLflow metric keys for aggregates: ``"<label>/<measure>/mean"`` (also ``std``,
    ``ci95_low``, ``ci95_high`` and ``n``); NaN statistics of single runs are left out."""
    metrics = {}
    for label, measures in summaries.items():
        for measure, s in measures.items():
            stats_ = {
                "mean": s.mean,
                "std": s.std,
                "ci95_low": s.low,
                "ci95_high": s.high,
                "n": s.n,
            }
            for stat, value in stats_.items():
                if not math.isnan(value):
                    metrics[f"{label}/{measure}/{stat}"] = float(value)
    return metrics


Verdict = Literal["holds", "does not hold", "inconclusive"]


@dataclass(frozen=True)
class Claim:
    """A statement of the lecture, decided by the mean of ``subject - baseline`` on
    ``measure``, paired by seed: it holds when the difference has the claimed sign."""

    number: str
    statement: str
    measure: str
    subject: str  # a label, e.g. "imdb_reduced"
    baseline: str
    expected: Literal["higher", "lower"]  # the subject's measure, if the claim holds


@dataclass(frozen=True)
class Decided:
    claim: Claim
    verdict: Verdict
    n: int  # paired seeds
    mean_difference: float
    low: float
    high: float
    why: str


MEASURES = {
    "validation_loss_min_epoch": "epoch of lowest validation loss",
    "val/loss_last": "validation loss at the last epoch",
    "val/loss_min": "lowest validation loss",
    "val/loss_rise": "rise of validation loss from its minimum to the last epoch",
    "test/accuracy": "test accuracy",
}

LECTURE_CLAIMS = (
    Claim("1", "The reduced model (4-4-1) starts to overfit later than the original "
          "(lecture: epoch 10 vs 6).", "validation_loss_min_epoch", "imdb_reduced",
          "imdb_dense", "higher"),
    Claim("2a", "The smaller network performs better than the original: lower validation "
          "loss at the last epoch.", "val/loss_last", "imdb_reduced", "imdb_dense", "lower"),
    Claim("2b", "The smaller network performs better than the original: lower lowest "
          "validation loss.", "val/loss_min", "imdb_reduced", "imdb_dense", "lower"),
    Claim("3", "L2 regularization resists overfitting better than the original.",
          "val/loss_rise", "imdb_l2", "imdb_dense", "lower"),
    Claim("4a", "Dropout is slightly better than the original (lower validation loss at "
          "the last epoch).", "val/loss_last", "imdb_dropout", "imdb_dense", "lower"),
    Claim("4b", "Dropout controls overfitting less well than L2.", "val/loss_rise",
          "imdb_dropout", "imdb_l2", "higher"),
    Claim("5", "The CNN beats the dense network on MNIST test accuracy.", "test/accuracy",
          "mnist_cnn", "mnist_dense", "higher"),
)  # fmt: skip


MIN_SEEDS = 3  # paired seeds a claim needs before its interval can decide it


def decide_claim(claim: Claim, by_seed: Mapping[str, Mapping[int, Mapping[str, float]]]) -> Decided:
    """The verdict from per-seed measures (label -> seed -> measure -> value).

    Holds when the 95% interval of the paired mean difference lies wholly on the claimed
    side of zero; does not hold when it lies wholly on the other side, or the differences
    are all zero; inconclusive when it spans zero or fewer than 3 seeds pair up.
    """
    subject, baseline = by_seed.get(claim.subject, {}), by_seed.get(claim.baseline, {})
    seeds = sorted(
        s for s in set(subject) & set(baseline)
        if claim.measure in subject[s] and claim.measure in baseline[s]
    )  # fmt: skip
    differences = np.array([subject[s][claim.measure] - baseline[s][claim.measure] for s in seeds])
    n = len(differences)
    if n == 0:
        return Decided(claim, "inconclusive", 0, math.nan, math.nan, math.nan,
                       f"no seed has both {claim.subject} and {claim.baseline}")  # fmt: skip
    mean = float(differences.mean())
    summary = summarize(differences)
    sign = 1 if claim.expected == "higher" else -1
    # The interval turned so that positive means "as claimed".
    low, high = sorted((sign * summary.low, sign * summary.high))
    if n < MIN_SEEDS:
        verdict: Verdict = "inconclusive"
        why = f"only {n} paired seed(s); at least {MIN_SEEDS} are needed"
    elif low == high == 0:
        verdict, why = "does not hold", "no difference on any seed"
    elif low > 0:
        verdict, why = "holds", "the 95% interval lies on the claimed side of zero"
    elif high < 0:
        verdict, why = "does not hold", "the 95% interval lies on the other side of zero"
    else:
        verdict, why = "inconclusive", "the 95% interval spans zero"
    return Decided(claim, verdict, n, mean, summary.low, summary.high, why)
