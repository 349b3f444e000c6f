"""The statistical tests behind the drift signals: pure functions of a reference sample and
a window, each returning a statistic and a p-value.

- numeric features, confidence, entropy: the two-sample Kolmogorov-Smirnov test
  (asymptotic p-value: the exact one costs seconds at 1,000 rows; conservative with ties
  such as integer lengths);
- predicted classes: Pearson's chi-squared test of the window's class counts against the
  reference's (a 2 x k contingency table; empty classes dropped): label shift;
- last hidden layer: the maximum mean discrepancy (MMD, Gretton et al. 2012) with a
  Gaussian kernel (bandwidth: the median distance in the reference) and a permutation test
  whose null distribution is a gamma fitted to the permuted statistics' mean and variance
  (Gretton et al. 2009): a Bonferroni level of 0.0005 needs p-values no count of 100
  permutations can give.

The signals of one window are one family: :func:`bonferroni` is its correction.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class Test:
    statistic: float
    p_value: float


def ks_test(reference: np.ndarray, window: np.ndarray) -> Test:
    """Two-sample Kolmogorov-Smirnov: the largest gap between the two empirical CDFs."""
    result = stats.ks_2samp(reference, window, method="asymp")
    return Test(float(result.statistic), float(result.pvalue))


def class_test(reference_counts: np.ndarray, window_counts: np.ndarray) -> Test:
    """Chi-squared test that the window's classes come from the reference's distribution
    (Cramer's V as the statistic: 0 same proportions, 1 disjoint)."""
    table = np.array([reference_counts, window_counts], dtype=np.float64)
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
        return Test(0.0, 1.0)
    chi2, p_value, _, _ = stats.chi2_contingency(table, correction=False)
    cramers_v = np.sqrt(chi2 / table.sum())
    return Test(float(cramers_v), float(p_value))


def bandwidth(reference: np.ndarray) -> float:
    """The median pairwise distance among (up to 500 of) the reference rows."""
    rows = np.asarray(reference[:500], dtype=np.float64)
    squared = _squared_distances(rows, rows)
    distances = np.sqrt(squared[np.triu_indices(len(rows), k=1)])
    median = float(np.median(distances)) if len(distances) else 1.0
    return median if median > 0 else 1.0


def _squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    aa, bb = (a * a).sum(axis=1), (b * b).sum(axis=1)
    return np.maximum(aa[:, None] + bb[None, :] - 2.0 * a @ b.T, 0.0)


def mmd_test(
    reference: np.ndarray,
    window: np.ndarray,
    scale: float,
    rng: np.random.Generator,
    permutations: int = 100,
) -> Test:
    """Squared MMD (biased V-statistic) between the rows of ``reference`` and ``window``
    with kernel exp(-d^2 / (2 scale^2)), and its p-value under a gamma fitted to the
    statistic over ``permutations`` random splits of the pooled rows. All permutations in
    one matrix product."""
    x = np.concatenate([reference, window]).astype(np.float32)
    kernel = np.exp(-_squared_distances(x, x) / np.float32(2.0 * scale * scale))
    n, m = len(reference), len(window)
    sides = np.empty((n + m, permutations + 1))
    sides[:, 0] = np.r_[np.full(n, 1.0 / n), np.full(m, -1.0 / m)]
    for column in range(1, permutations + 1):
        sides[:, column] = rng.permutation(sides[:, 0])
    values = np.einsum("ip,ip->p", sides, kernel @ sides)
    observed, null = values[0], values[1:]
    mean, variance = float(null.mean()), float(null.var())
    if variance <= 0 or mean <= 0:
        return Test(float(observed), 1.0 if observed <= mean else 0.0)
    p_value = stats.gamma.sf(observed, mean * mean / variance, scale=variance / mean)
    return Test(float(observed), float(p_value))


def bonferroni(alpha: float, tests: int) -> float:
    """The per-test level that keeps the chance of any false alarm among ``tests`` tests at
    most ``alpha`` (whatever their dependence)."""
    return alpha / max(tests, 1)
