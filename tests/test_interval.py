"""The accuracy estimate's interval and its withholding, the class mix of new rows, and the
weighted statistics they rest on: pure functions on hand-made numbers."""

from __future__ import annotations

import numpy as np
import pytest

from keras_variants.monitoring import estimate, held_out, interval, label_shift, signals
from keras_variants.monitoring.interval import Envelope, Window


@pytest.mark.parametrize(
    ("estimate_", "rows", "bounds"),
    [
        (0.9, 2, (0.5, 1.0)),  # two rows: at best one of them may be wrong
        (1.0, 20, (1.0, 1.0)),  # the sampling part alone; shift widens it (below)
        (0.5, 100, (0.40, 0.60)),  # 1.96 x 0.05 either side, in whole rows
        (1.3, 10, (1.0, 1.0)),  # an estimate is a probability: clipped
    ],
)
def test_sampling_bounds_are_whole_rows_of_a_binomial(estimate_, rows, bounds) -> None:
    assert interval.sampling_bounds(estimate_, rows) == pytest.approx(bounds)


def _envelope(under: float = 0.2, floor: float = 0.01) -> Envelope:
    """One known shift at distance 0.5 whose truth lay ``under`` below its sampling
    interval; limits of 0.6 on the confidence and 0.3 on the ink."""
    return Envelope(
        np.array([0.5]),
        np.array([under]),
        np.array([0.0]),
        (floor, floor),
        {"confidence": 0.6, "ink_share": 0.3},
        "rotated 45°",
    )


@pytest.mark.parametrize(
    ("rows", "distances", "expected"),
    [
        # Half the distance of the known shift: widened below by 1.5 x 0.2 x 0.5.
        (500, {"confidence": 0.25, "ink_share": 0.1}, ("given", 0.15, 0.01)),
        # At or past the shift's distance, its whole excess (x 1.5).
        (500, {"confidence": 0.55, "ink_share": 0.1}, ("given", 0.30, 0.01)),
        # Near nothing: the clean windows' floor.
        (500, {"confidence": 0.0, "ink_share": 0.0}, ("given", 0.01, 0.01)),
        # Past the furthest shift on one statistic: no number.
        (500, {"confidence": 0.25, "ink_share": 0.31}, ("withheld", interval.TOO_FAR)),
        # Fewer rows than the smallest size: no number.
        (49, {"confidence": 0.0, "ink_share": 0.0}, ("withheld", interval.TOO_FEW)),
    ],
)
def test_the_interval_widens_with_distance_and_is_withheld_past_the_checked_shifts(
    rows: int, distances: dict, expected: tuple
) -> None:
    envelopes = {size: _envelope() for size in interval.SIZES}
    size = interval.size_for(rows, interval.SIZES)
    found = interval.interval(envelopes, 0.8, rows, {size: distances} if size else {})
    if expected[0] == "withheld":
        assert found.estimate is None and found.low is None and found.withheld == expected[1]
        return
    low, high = interval.sampling_bounds(0.8, rows)
    assert found.withheld is None and found.estimate == 0.8
    assert found.low == pytest.approx(low - expected[1])
    assert found.high == pytest.approx(high + expected[2])
    assert found.checked_on == "rotated 45°"


def test_a_version_without_envelopes_gives_no_number() -> None:
    found = interval.interval({}, 0.9, 1_000, {})
    assert found.estimate is None and found.withheld == interval.NOT_CALIBRATED


def _window(rung: str, distance: float, estimate_: float, truth: float | None, rows: int = 500):
    distances = {"confidence": distance, "ink_share": distance / 2}
    return Window(rung, min(rows, 500), rows, distances, estimate_, truth)


def test_an_envelope_keeps_each_windows_excess_the_clean_floor_and_the_limits() -> None:
    windows = [
        _window("clean", 0.04, 0.95, 0.95),
        _window("clean", 0.06, 0.95, 0.90),  # below its sampling interval: the floor
        _window("rotated 45°", 0.5, 0.80, 0.40),
    ]
    envelope = interval.fit_envelope(windows, baseline="clean")
    clean_low = interval.sampling_bounds(0.95, 500)[0]
    shifted_low = interval.sampling_bounds(0.80, 500)[0]
    assert envelope.floor == pytest.approx((clean_low - 0.90, 0.0))
    assert envelope.under[2] == pytest.approx(shifted_low - 0.40)
    assert envelope.furthest == "rotated 45°"
    # The largest value seen, plus the clean windows' spread from median to largest.
    assert envelope.limits["confidence"] == pytest.approx(0.5 + (0.06 - 0.05))
    again = Envelope.from_dict(envelope.as_dict())
    assert again.limits == pytest.approx(envelope.limits)
    assert again.widening(0.3) == pytest.approx(envelope.widening(0.3), abs=1e-5)


def test_the_widening_grows_with_the_distance_beyond_clean_rows_own() -> None:
    """Clean windows lie 0.1 from the reference by sampling alone (the noise, their
    median); a shift at 0.5 lay 0.2 below. At the noise or nearer only the clean floor;
    halfway from it to the shift, half the excess (x 1.5); a shift no further than the
    noise joins the floor, whatever its distance's share."""
    windows = [_window("clean", d, 0.95, 0.95) for d in (0.08, 0.1, 0.12)]
    windows.append(_window("rotated 45°", 0.5, 0.95, 0.0))
    envelope = interval.fit_envelope(windows, baseline="clean")
    excess = interval.sampling_bounds(0.95, 500)[0] - 0.0
    assert envelope.noise == pytest.approx(0.1)
    assert envelope.widening(0.05) == envelope.widening(0.1) == (0.0, 0.0)
    assert envelope.widening(0.3)[0] == pytest.approx(1.5 * excess * 0.5)
    assert envelope.widening(0.9)[0] == pytest.approx(1.5 * excess)
    assert Envelope.from_dict(envelope.as_dict()).noise == pytest.approx(0.1)
    near = interval.fit_envelope([*windows, _window("noise", 0.09, 0.95, 0.5)], "clean")
    assert near.floor[0] == pytest.approx(interval.sampling_bounds(0.95, 500)[0] - 0.5)
    # An envelope stored before the noise was kept widens from 0, as it did.
    old = Envelope.from_dict({k: v for k, v in envelope.as_dict().items() if k != "noise"})
    assert old.widening(0.3)[0] == pytest.approx(1.5 * excess * 0.3 / 0.5)


def test_held_out_coverage_leaves_each_shift_out_of_the_fitting() -> None:
    """A shift bracketed by others is covered from them; the furthest shift, left out, is
    past every other one and gets no number; a rung without truth is only counted."""
    rng = np.random.default_rng(0)
    windows = []
    for _ in range(20):
        windows.append(_window("clean", rng.uniform(0.03, 0.05), 0.95, 0.95))
        windows.append(_window("clean, held out", rng.uniform(0.03, 0.05), 0.95, 0.95))
    for rung, distance, truth in (("mild", 0.2, 0.90), ("middle", 0.4, 0.75), ("far", 0.8, 0.4)):
        windows += [_window(rung, distance, 0.95, truth) for _ in range(5)]
    windows += [_window("no labels", 0.3, 0.9, None) for _ in range(5)]
    coverage = {
        e["rung"]: e for e in held_out.held_out_coverage(windows, "clean", "clean, held out")
    }
    assert "clean" not in coverage  # always fitted on
    assert coverage["clean, held out"]["covered"] == coverage["clean, held out"]["estimated"] == 20
    assert coverage["middle"]["covered"] == 5  # from "far": 1.5 x its excess x 0.4 / 0.8
    assert coverage["far"]["estimated"] == 0  # past "middle", the furthest left
    assert coverage["no labels"]["estimated"] == 5 and "covered" not in coverage["no labels"]
    assert all(held_out.holds(e) for e in coverage.values())


@pytest.mark.parametrize(
    ("new_mix", "expected"),
    [
        ([0.5, 0.5], [1.0, 1.0]),  # the held-out mix
        ([1.0, 0.0], [2.0, 0.0]),  # one class only
        ([0.8, 0.2], [1.6, 0.4]),
    ],
)
def test_class_weights_recover_a_changed_class_mix(new_mix, expected) -> None:
    """Held out: half of each class, 90% and 70% right. The predicted shares of a new mix
    are C @ w; BBSE inverts them."""
    recall = np.array([0.9, 0.7])
    confusion = np.array([[recall[0], 1 - recall[1]], [1 - recall[0], recall[1]]]) * 0.5
    weights = np.asarray(new_mix) / 0.5
    predicted = confusion @ weights
    found = label_shift.class_weights(confusion, predicted * 1_000)
    np.testing.assert_allclose(found, expected, atol=1e-9)


def test_confusion_counts_predicted_against_true() -> None:
    found = label_shift.confusion(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]), 2)
    np.testing.assert_allclose(found, [[0.25, 0.25], [0.0, 0.5]])


def test_estimators_fitted_on_one_class_by_weight_are_those_of_that_class() -> None:
    rng = np.random.default_rng(1)
    confidence = rng.uniform(0.5, 1.0, 4_000)
    correct = rng.random(4_000) < confidence
    labels = rng.integers(0, 2, 4_000)
    correct[labels == 1] &= rng.random((labels == 1).sum()) < 0.5  # class 1 is harder
    weighted = estimate.fit(confidence, correct, (labels == 1).astype(float))
    alone = estimate.fit(confidence[labels == 1], correct[labels == 1])
    for name in estimate.ESTIMATORS:
        new = rng.uniform(0.5, 1.0, 500)
        assert weighted.estimate(name, new) == pytest.approx(alone.estimate(name, new), abs=0.02)


def test_weighted_ks_is_the_ks_of_the_rows_weighted_in() -> None:
    rng = np.random.default_rng(2)
    reference, window = rng.normal(size=400), rng.normal(0.5, 1.0, 300)
    keep = rng.random(400) < 0.5
    assert signals.ks_distance(reference, window, keep.astype(float)) == pytest.approx(
        signals.ks_test(reference[keep], window).statistic
    )
    assert signals.ks_distance(reference, window) == pytest.approx(
        signals.ks_test(reference, window).statistic
    )


def test_mmd_distance_is_zero_for_the_same_rows_and_grows_with_a_shift() -> None:
    rng = np.random.default_rng(3)
    rows = rng.normal(size=(50, 4))
    same = signals.gaussian_kernel(np.concatenate([rows, rows]), 1.0)
    assert signals.mmd_distance(same, 50, np.arange(50)) == pytest.approx(0.0, abs=1e-3)
    moved = signals.gaussian_kernel(np.concatenate([rows, rows + 1.0]), 1.0)
    assert signals.mmd_distance(moved, 50, np.arange(50)) > 0.3
