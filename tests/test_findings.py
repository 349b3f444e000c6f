"""The report's findings (where each variant starts to overfit, who wins) and the seed
groups they are read from."""

from __future__ import annotations

import pytest

from keras_variants.reporting.findings import findings_for, groups
from keras_variants.tracking.records import VariantRecord


def _record(variant: str, val_loss: list[float], seed: int = 0, **metrics: float) -> VariantRecord:
    return VariantRecord(
        variant=variant,
        dataset="imdb",
        run_id=f"{variant}-{seed}",
        params={"seed": str(seed)},
        metrics={"val/accuracy": 0.8, "test/accuracy": 0.8} | metrics,
        tags={},
        curves={"val/loss": val_loss, "train/loss": [0.5] * len(val_loss)},
    )


def test_findings_state_where_each_variant_overfits_and_who_wins() -> None:
    dense = _record("imdb_dense", [0.40, 0.30, 0.35, 0.50], **{"val/accuracy": 0.85})
    reduced = _record("imdb_reduced", [0.50, 0.40, 0.35, 0.33], **{"test/accuracy": 0.86})
    assert findings_for("imdb", [dense, reduced]) == [
        "imdb_dense starts to overfit after epoch 2 of 4 (lowest validation loss 0.3000).",
        "imdb_reduced was still improving at its last epoch (4) (lowest validation loss "
        "0.3300); imdb_dense starts to overfit after epoch 2 of 4, and its final validation "
        "loss is 0.1700 higher.",
        "Best on validation accuracy: imdb_dense (0.8500); best test accuracy: imdb_reduced "
        "(0.8600).",
    ]


def test_findings_name_the_mean_of_the_seeds_lowest_loss_and_its_epoch() -> None:
    """Seed 0 is lowest at epoch 1 (1.0), seed 1 at epoch 4 (0.5): the findings say epoch
    2.5 and 0.75, as the table, the claims and the sweep findings do, not the lowest point
    of the mean curve (2.25 at epoch 4)."""
    seeds = [
        _record("imdb_dropout", [1.0, 2.0, 3.0, 4.0], 0, validation_loss_min_epoch=1),
        _record("imdb_dropout", [5.0, 4.0, 3.0, 0.5], 1, validation_loss_min_epoch=4),
    ]
    seeds[0].metrics["val/loss_min"], seeds[1].metrics["val/loss_min"] = 1.0, 0.5
    (group,) = groups(seeds)
    assert findings_for("imdb", [group.mean])[0] == (
        "imdb_dropout starts to overfit after epoch 2.5 of 4 (lowest validation loss 0.7500)."
    )


def test_groups_average_seeds_curve_by_curve() -> None:
    (group,) = groups([_record("imdb_l2", [0.4, 0.2], 0), _record("imdb_l2", [0.6, 0.4], 1)])
    assert group.seeds == 2 and group.mean.curves["val/loss"] == pytest.approx([0.5, 0.3])
    assert group.spread["val/loss"] == pytest.approx([0.1414214, 0.1414214])
