"""ROC AUC, as training logs it for the binary data set: worked by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from keras_variants.model.training import roc_auc


@pytest.mark.parametrize(
    ("labels", "scores", "auc"),
    [
        ([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9], 1.0),
        ([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1], 0.0),
        ([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5], 0.5),  # ties count half
        ([0, 1, 1], [0.3, 0.2, 0.4], 0.5),
    ],
)
def test_roc_auc(labels: list[int], scores: list[float], auc: float) -> None:
    assert roc_auc(np.array(labels), np.array(scores)) == pytest.approx(auc)


def test_roc_auc_of_one_class_is_nan() -> None:
    assert math.isnan(roc_auc(np.array([1, 1]), np.array([0.2, 0.4])))
