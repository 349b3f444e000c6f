"""The lecture's claims, each decided from the paired differences of two variants' seeds:
holds, does not hold (the other way, or practically nil), or inconclusive.

Pure functions over plain data (label -> seed -> measure -> value); SciPy's t distribution.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

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
    low: float  # the interval at ``level`` that decided it
    high: float
    why: str
    level: float = 0.95  # confidence of [low, high]: 1 - the alpha spent at its look
    look: str = ""  # "look 2 of 4" when seeds were added until it was decided


MEASURES = {
    "validation_loss_min_epoch": "epoch of lowest validation loss",
    "val/loss_last": "validation loss at the last epoch",
    "val/loss_min": "lowest validation loss",
    "val/loss_rise": "rise of validation loss from its minimum to the last epoch",
    "test/accuracy": "test accuracy",
}
# Equivalence margins: a paired difference whose interval lies within +-margin is
# practically nil (two one-sided tests). The smallest difference the lecture's argument
# would notice: one epoch; 0.01 on the lowest validation loss (about 4% of it); 0.02 on
# the last epoch's loss and on the rise (3-5% of them); 0.2 points of accuracy.
MARGINS = {
    "validation_loss_min_epoch": 1.0,
    "val/loss_min": 0.01,
    "val/loss_last": 0.02,
    "val/loss_rise": 0.02,
    "test/accuracy": 0.002,
}

# The lecture's words in quotation marks where issues 11 and 34 quote it (sources.toml),
# with the measure that decides each; tests/test_ledger.py checks them against the file.
LECTURE_CLAIMS = (
    Claim("1", "The reduced model (4-4) starts to overfit later than the original (16-16): "
          '"epoch 10 rather than epoch 6".', "validation_loss_min_epoch", "imdb_reduced",
          "imdb_dense", "higher"),
    Claim("2a", "The smaller network performs better than the original: lower validation "
          "loss at the last epoch.", "val/loss_last", "imdb_reduced", "imdb_dense", "lower"),
    Claim("2b", "The smaller network performs better than the original: lower lowest "
          "validation loss.", "val/loss_min", "imdb_reduced", "imdb_dense", "lower"),
    Claim("3", 'With L2 regularization (0.001) the model is "much more resistant to '
          'overfitting" than the original: a smaller rise of validation loss after its lowest.',
          "val/loss_rise", "imdb_l2", "imdb_dense", "lower"),
    Claim("4a", 'Dropout (0.5) is "slightly better" than the original: lower validation loss '
          "at the last epoch.", "val/loss_last", "imdb_dropout", "imdb_dense", "lower"),
    Claim("4b", "Dropout controls overfitting less well than L2: a larger rise of validation "
          "loss after its lowest.", "val/loss_rise", "imdb_dropout", "imdb_l2", "higher"),
    Claim("5", "The CNN beats the dense network on MNIST test accuracy.", "test/accuracy",
          "mnist_cnn", "mnist_dense", "higher"),
)  # fmt: skip


MIN_SEEDS = 3  # paired seeds a claim needs before its interval can decide it
ALPHA = 0.05  # a claim's error rate: a wrong verdict at most this often (over all looks)


def paired_seeds(claim: Claim, by_seed: Mapping[str, Mapping[int, Mapping[str, float]]]) -> list:
    """The seeds on which both of the claim's labels have its measure, in order."""
    subject, baseline = by_seed.get(claim.subject, {}), by_seed.get(claim.baseline, {})
    return sorted(
        s for s in set(subject) & set(baseline)
        if claim.measure in subject[s] and claim.measure in baseline[s]
    )  # fmt: skip


def paired_differences(
    claim: Claim,
    by_seed: Mapping[str, Mapping[int, Mapping[str, float]]],
    seeds: Sequence[int] | None = None,
) -> list[float]:
    """``subject - baseline`` on the claim's measure, one per paired seed (or ``seeds``)."""
    subject, baseline = by_seed.get(claim.subject, {}), by_seed.get(claim.baseline, {})
    seeds = paired_seeds(claim, by_seed) if seeds is None else seeds
    return [subject[s][claim.measure] - baseline[s][claim.measure] for s in seeds]


def _percent(level: float) -> str:
    return f"{100 * level:.2f}".rstrip("0").rstrip(".") + "%"


def decide_claim(
    claim: Claim,
    by_seed: Mapping[str, Mapping[int, Mapping[str, float]]],
    alpha: float = ALPHA,
    seeds: Sequence[int] | None = None,
) -> Decided:
    """The verdict from per-seed measures (label -> seed -> measure -> value), on the
    paired seeds (or only ``seeds``), with error rate ``alpha``.

    Holds when the (1 - alpha) t-interval of the paired mean difference lies wholly on the
    claimed side of zero; does not hold when it lies wholly on the other side, or when the
    difference is practically nil: the (1 - 2 alpha) interval lies within the measure's
    equivalence margin (:data:`MARGINS`; two one-sided tests, TOST), or every seed's
    difference is zero; inconclusive otherwise, or when fewer than 3 seeds pair up.
    """
    differences = np.array(paired_differences(claim, by_seed, seeds))
    n = len(differences)
    if n == 0:
        return Decided(claim, "inconclusive", 0, math.nan, math.nan, math.nan,
                       f"no seed has both {claim.subject} and {claim.baseline}")  # fmt: skip
    mean = float(differences.mean())
    level = 1 - alpha
    if n < MIN_SEEDS:
        why = f"only {n} paired seed(s); at least {MIN_SEEDS} are needed"
        return Decided(claim, "inconclusive", n, mean, math.nan, math.nan, why, level)
    low, high = t_interval(differences, level)
    same_low, same_high = t_interval(differences, 1 - 2 * alpha)
    margin = MARGINS[claim.measure]
    sign = 1 if claim.expected == "higher" else -1
    # The interval turned so that positive means "as claimed".
    claimed_low, claimed_high = sorted((sign * low, sign * high))
    shown = _percent(level)
    if low == high == 0:
        verdict: Verdict = "does not hold"
        why = "no difference on any seed"
    elif claimed_low > 0:
        verdict, why = "holds", f"the {shown} interval lies on the claimed side of zero"
        if -margin < low and high < margin:
            why += f", though within the margin of a practical difference (+-{margin:g})"
    elif claimed_high < 0:
        verdict, why = "does not hold", f"the {shown} interval lies on the other side of zero"
    elif -margin < same_low and same_high < margin:
        verdict = "does not hold"
        why = (
            f"no practical difference: the {_percent(1 - 2 * alpha)} interval "
            f"[{same_low:+.4g}, {same_high:+.4g}] lies within +-{margin:g} (TOST)"
        )
    else:
        verdict = "inconclusive"
        why = f"the {shown} interval spans zero and reaches past +-{margin:g}"
    return Decided(claim, verdict, n, mean, low, high, why, level)


def t_interval(values: Sequence[float] | np.ndarray, level: float) -> tuple[float, float]:
    """The t-interval of the mean of ``values`` (at least two) at confidence ``level``;
    a point when they are all equal."""
    data = np.asarray(values, dtype=np.float64)
    mean, std = float(data.mean()), float(data.std(ddof=1))
    if std == 0:
        return mean, mean
    from scipy import stats

    half = float(stats.t.ppf(0.5 + level / 2, len(data) - 1)) * std / math.sqrt(len(data))
    return mean - half, mean + half
