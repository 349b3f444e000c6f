"""The statistical tests behind the drift signals: pure functions of a reference sample and
a window, each returning a statistic and a p-value.

- numeric features, confidence, entropy: the two-sample Kolmogorov-Smirnov test
  (asymptotic p-value, Kolmogorov's limit with Stephens' small-sample correction: the exact
  one costs seconds at 1,000 rows; conservative with ties such as integer lengths);
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
from scipy import special

MMD_ROWS = 150  # per side: the permutation test's cost grows with its square


@dataclass(frozen=True)
class Test:
    statistic: float
    p_value: float


def ks_test(reference: np.ndarray, window: np.ndarray) -> Test:
    """Two-sample Kolmogorov-Smirnov: the largest gap between the two empirical CDFs."""
    a, b = np.sort(np.asarray(reference, np.float64)), np.sort(np.asarray(window, np.float64))
    n, m = len(a), len(b)
    if not n or not m:
        return Test(0.0, 1.0)
    points = np.concatenate([a, b])
    below_a = np.searchsorted(a, points, side="right") / n
    gap = below_a - np.searchsorted(b, points, side="right") / m
    statistic = float(np.abs(gap).max())
    root = np.sqrt(n * m / (n + m))
    p_value = float(special.kolmogorov((root + 0.12 + 0.11 / root) * statistic))
    return Test(statistic, min(max(p_value, 0.0), 1.0))


def ks_distance(
    reference: np.ndarray, window: np.ndarray, reference_weights: np.ndarray | None = None
) -> float:
    """The Kolmogorov-Smirnov statistic with the reference's rows weighted (a re-mixed
    reference): the largest gap between the weighted empirical CDF of ``reference`` and
    the empirical CDF of ``window``. Equal weights give :func:`ks_test`'s statistic."""
    a, b = np.asarray(reference, np.float64), np.sort(np.asarray(window, np.float64))
    if not len(a) or not len(b):
        return 0.0
    order = np.argsort(a, kind="stable")
    a = a[order]
    w = np.ones(len(a)) if reference_weights is None else np.asarray(reference_weights)[order]
    total = w.sum()
    if total <= 0:
        return 1.0
    cumulative = np.r_[0.0, np.cumsum(w) / total]
    points = np.concatenate([a, b])
    below_a = cumulative[np.searchsorted(a, points, side="right")]
    below_b = np.searchsorted(b, points, side="right") / len(b)
    return float(np.abs(below_a - below_b).max())


def class_test(reference_counts: np.ndarray, window_counts: np.ndarray) -> Test:
    """Chi-squared test that the window's classes come from the reference's distribution
    (Cramer's V as the statistic: 0 same proportions, 1 disjoint)."""
    table = np.array([reference_counts, window_counts], dtype=np.float64)
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
        return Test(0.0, 1.0)
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0) / table.sum()
    chi2 = float(((table - expected) ** 2 / expected).sum())
    p_value = float(special.chdtrc(table.shape[1] - 1, chi2))
    return Test(float(np.sqrt(chi2 / table.sum())), p_value)


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


def gaussian_kernel(rows: np.ndarray, scale: float) -> np.ndarray:
    """exp(-d^2 / (2 scale^2)) between every pair of ``rows``."""
    x = np.asarray(rows, dtype=np.float32)
    return np.exp(-_squared_distances(x, x) / np.float32(2.0 * scale * scale))


def mmd_test(
    reference: np.ndarray,
    window: np.ndarray,
    scale: float,
    rng: np.random.Generator,
    permutations: int = 100,
) -> Test:
    """Squared MMD (biased V-statistic) between the rows of ``reference`` and ``window``
    with kernel exp(-d^2 / (2 scale^2)), and its p-value under a gamma fitted to the
    statistic over ``permutations`` random splits of the pooled rows."""
    kernel = gaussian_kernel(np.concatenate([reference, window]), scale)
    return mmd_of_kernel(kernel, len(reference), rng, permutations)


def mmd_of_kernel(
    kernel: np.ndarray, reference_rows: int, rng: np.random.Generator, permutations: int = 100
) -> Test:
    """:func:`mmd_test` from the kernel of the pooled rows, the reference's first (a caller
    testing many windows computes one kernel and takes its blocks). All permutations in one
    matrix product."""
    n, m = reference_rows, len(kernel) - reference_rows
    if not n or not m:
        return Test(0.0, 1.0)
    sides = np.empty((n + m, permutations + 1), dtype=np.float32)
    sides[:, 0] = np.r_[np.full(n, 1.0 / n), np.full(m, -1.0 / m)]
    sides[:, 1:] = rng.permuted(np.repeat(sides[:, :1], permutations, axis=1), axis=0)
    values = np.einsum("ip,ip->p", sides, kernel @ sides, dtype=np.float64)
    observed, null = values[0], values[1:]
    mean, variance = float(null.mean()), float(null.var())
    if variance <= 0 or mean <= 0:
        return Test(float(observed), 1.0 if observed <= mean else 0.0)
    # The gamma's survival function: shape mean^2/variance, scale variance/mean.
    p_value = special.gammaincc(mean * mean / variance, max(observed, 0.0) * mean / variance)
    return Test(float(observed), float(p_value))


def mmd_distance(
    kernel: np.ndarray,
    reference_rows: int,
    window_rows: np.ndarray,
    reference_weights: np.ndarray | None = None,
) -> float:
    """The MMD (square root of the biased squared MMD) between the first
    ``reference_rows`` rows of a pooled ``kernel``, weighted by ``reference_weights`` (a
    re-mixed reference), and the rows ``window_rows`` (positions after them)."""
    n = reference_rows
    a = np.ones(n) if reference_weights is None else np.asarray(reference_weights, np.float64)
    a = a / a.sum() if a.sum() > 0 else np.full(n, 1.0 / n)
    mine = n + np.asarray(window_rows)
    squared = (
        a @ kernel[:n, :n] @ a
        + kernel[np.ix_(mine, mine)].mean(dtype=np.float64)
        - 2.0 * (a @ kernel[:n][:, mine]).mean()
    )
    return float(np.sqrt(max(float(squared), 0.0)))


def bonferroni(alpha: float, tests: int) -> float:
    """The per-test level that keeps the chance of any false alarm among ``tests`` tests at
    most ``alpha`` (whatever their dependence)."""
    return alpha / max(tests, 1)
