"""A changed class mix (label shift): the classes' shares in new data estimated from the
served model's answers by black-box shift estimation (BBSE, Lipton, Wang & Smola 2018).

Under label shift each class's inputs look as they did on held-out data and only the
classes' shares change, so the shares of the predicted classes in new data are the
held-out confusion matrix times the new class shares: ``C w = mu``, with ``C[i, j]`` the
held-out share of rows of class ``j`` predicted ``i`` and ``w[j]`` the new share of class
``j`` over its held-out share. Solved by non-negative least squares (SciPy's ``nnls``),
``w`` re-mixes the held-out rows (each weighted by its class's ``w``) into the new mix,
on which the accuracy estimators are fitted again
(:func:`keras_variants.monitoring.estimate.fit`).
"""

from __future__ import annotations

import numpy as np


def confusion(predicted: np.ndarray, labels: np.ndarray, classes: int) -> np.ndarray:
    """``C[i, j]``: the share of rows of true class ``j`` predicted as ``i`` (sums to 1)."""
    table = np.zeros((classes, classes), dtype=np.float64)
    np.add.at(table, (np.asarray(predicted), np.asarray(labels)), 1.0)
    return table / max(table.sum(), 1.0)


def class_weights(confusion_matrix: np.ndarray, predicted_counts: np.ndarray) -> np.ndarray:
    """Per true class, its share in the new data over its held-out share (BBSE), from the
    new data's ``predicted_counts`` per class: ``w >= 0`` minimising ``|C w - mu|``, scaled
    so the re-mixed held-out rows keep their total weight. All ones when nothing was
    predicted or the solution is degenerate."""
    from scipy.optimize import nnls

    counts = np.asarray(predicted_counts, dtype=np.float64)
    held_out = confusion_matrix.sum(axis=0)  # each class's held-out share
    if counts.sum() <= 0:
        return np.ones(len(held_out))
    weights, _ = nnls(confusion_matrix, counts / counts.sum())
    total = float(held_out @ weights)
    return weights / total if total > 0 else np.ones(len(held_out))
