"""Monitoring: the statistical tests on known answers, the input statistics on images and
texts with known measurements, the accuracy estimators on a known shift, and the profile of
a registered version with drift and no drift on real data slices."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from keras_variants.monitoring import estimate, signals
from keras_variants.monitoring.features import digit_features, review_features

RNG = np.random.default_rng(7)
SAME = RNG.normal(size=(2, 500))
SHIFTED = RNG.normal(0.5, 1.0, size=500)


@pytest.mark.parametrize(
    ("reference", "window", "drifted"),
    [
        (SAME[0], SAME[1], False),  # two samples of one normal
        (SAME[0], SHIFTED, True),  # the mean moved by half a standard deviation
        (SAME[0], SAME[1] * 3, True),  # the spread tripled, same mean
    ],
)
def test_ks_test_tells_a_moved_distribution_from_a_second_sample(reference, window, drifted):
    assert (signals.ks_test(reference, window).p_value < 0.001) is drifted


@pytest.mark.parametrize(
    ("window", "drifted", "statistic"),
    [
        ([100, 100], False, 0.0),  # the reference's own mix
        ([200, 0], True, None),  # one class only: label shift
        ([0, 0], False, 0.0),  # nothing to compare
    ],
)
def test_class_test_flags_a_one_class_sample(window, drifted, statistic) -> None:
    test = signals.class_test(np.array([500, 500]), np.array(window))
    assert (test.p_value < 0.001) is drifted
    if statistic is not None:
        assert test.statistic == pytest.approx(statistic)


def test_mmd_test_separates_moved_rows_and_keeps_same_ones_quiet() -> None:
    rng = np.random.default_rng(0)
    reference = rng.normal(size=(150, 8))
    scale = signals.bandwidth(reference)
    p_same = [
        signals.mmd_test(reference, rng.normal(size=(150, 8)), scale, rng).p_value
        for _ in range(40)
    ]
    moved = signals.mmd_test(reference, rng.normal(0.5, 1.0, size=(150, 8)), scale, rng)
    assert moved.p_value < 1e-4
    assert np.mean(np.array(p_same) < 0.05) <= 0.15  # about 5% expected; 40 draws


def test_bonferroni_divides_the_family_level() -> None:
    assert signals.bonferroni(0.05, 10) == pytest.approx(0.005)
    assert signals.bonferroni(0.05, 0) == pytest.approx(0.05)


@pytest.mark.parametrize(
    ("windows", "allowed"),
    [(40, 1), (100, 4), (200, 9), (18, -1), (19, 0)],  # (k + 1) / (n + 1) <= 5%
)
def test_a_threshold_may_raise_as_many_clean_alarms_as_the_conformal_bound_allows(
    windows: int, allowed: int
) -> None:
    from keras_variants.monitoring.ladders import allowed_alarms

    assert allowed_alarms(windows) == allowed
    assert (allowed + 1) / (windows + 1) <= 0.05 < (allowed + 2) / (windows + 1)


@pytest.mark.parametrize(
    ("errors", "chosen", "point"),
    [
        # the interval's estimator over-states by a constant: the closest one is printed
        ({"atc": 0.075, "calibrated": 0.030, "confidence": 0.113}, "confidence", "calibrated"),
        ({"atc": 0.104, "calibrated": 0.153, "confidence": 0.121}, "atc", "atc"),
        ({"atc": 0.05, "calibrated": 0.05, "confidence": 0.2}, "calibrated", "calibrated"),  # tie
        ({"atc": 0.05, "calibrated": 0.05, "confidence": 0.2}, "confidence", "atc"),
        # no labelled shift measured: nothing says another would be closer
        ({"atc": np.nan, "calibrated": np.nan, "confidence": np.nan}, "confidence", "confidence"),
    ],
)
def test_the_number_printed_is_the_closest_estimators(errors, chosen, point) -> None:
    from keras_variants.monitoring.ladders import choose_point

    tried = {name: {"held": 1, "pairs": 1, "width": 0.1, "error": e} for name, e in errors.items()}
    assert choose_point(chosen, tried) == point


@pytest.mark.parametrize(
    ("interval", "point", "printed"),
    [
        ((0.96, 0.80, 0.98), 0.877, 0.877),  # inside: the closer estimate is printed
        ((0.96, 0.80, 0.98), 0.79, None),  # outside: the interval's own stands
        ((0.96, 0.80, 0.98), 0.98, 0.98),  # on a bound: inside
        ((None, None, None), 0.9, None),  # no estimate given: none is made up
    ],
)
def test_the_closest_estimate_is_printed_only_inside_the_interval(interval, point, printed) -> None:
    from keras_variants.monitoring.interval import Interval, placed

    estimate, low, high = interval
    given = Interval(estimate, low, high, None if estimate is not None else "too few rows")
    moved = placed(given, point)
    assert (None if moved is None else moved.estimate) == printed
    if moved is not None:
        assert (moved.low, moved.high, moved.size) == (low, high, given.size)


def test_the_held_out_table_gives_the_numbers_printed_window_by_window() -> None:
    """An estimator 0.05 above the truth builds the intervals; a point estimator exact on
    every window is printed inside them: the table's error is the printed numbers' (0),
    window by window (a point taken from another window would be off), and without a point
    estimator it is the interval's own (0.05)."""
    from keras_variants.monitoring.held_out import held_out_coverage
    from keras_variants.monitoring.interval import Window, with_sampling

    def windows(offset: float) -> list[Window]:
        rungs = [("clean", 20), ("clean, held out", 10), ("shift", 10)]
        truths = [(rung, 0.70 + 0.01 * i) for rung, n in rungs for i in range(n)]
        return with_sampling(
            [Window(rung, 100, 100, {"confidence": 0.05}, t + offset, t) for rung, t in truths]
        )

    biased, exact = windows(0.05), windows(0.0)
    printed = {e["rung"]: e for e in held_out_coverage(biased, "clean", "clean, held out", exact)}
    own = {e["rung"]: e for e in held_out_coverage(biased, "clean", "clean, held out")}
    for rung in ("clean, held out", "shift"):
        assert printed[rung]["estimated"] == 10 and printed[rung]["covered"] == 10
        assert printed[rung]["error"] == pytest.approx(0.0, abs=1e-12)
        assert own[rung]["error"] == pytest.approx(0.05)
        assert printed[rung]["covered"] == own[rung]["covered"]  # the intervals are the same
    shuffled = [*exact[:30], *reversed(exact[30:])]  # the shift's points out of order
    moved = held_out_coverage(biased, "clean", "clean, held out", shuffled)
    assert next(e for e in moved if e["rung"] == "shift")["error"] > 0.02


def test_alpha_is_the_largest_whose_clean_alarms_stay_within_the_bound() -> None:
    """40 clean windows a size: one alarm is allowed, two are not. The smallest p-values
    (of 10 signals) 0.004 and 0.0015 alarm at 0.05 (p < 0.005) and the second at 0.02."""
    from keras_variants.monitoring.ladders import Drawn, choose_alpha

    def windows(*smallest: float) -> list[Drawn]:
        rest = [0.5] * (40 - len(smallest))
        return [Drawn(np.arange(3), {"a": p, "b": 0.9}) for p in (*smallest, *rest)]

    assert choose_alpha({100: windows(0.004, 0.0015)}, signals=10) == 0.02
    assert choose_alpha({100: windows(0.004), 500: windows(0.0015)}, signals=10) == 0.05
    assert choose_alpha({100: windows(1e-9, 1e-9)}, signals=10) == 0.001  # the smallest


def test_digit_features_measure_a_drawn_rectangle() -> None:
    image = np.zeros((1, 28, 28), dtype=np.uint8)
    image[0, 4:10, 10:14] = 200  # rows 4-9, columns 10-13
    features = {k: float(v[0]) for k, v in digit_features(image).items()}
    assert features == {
        "ink_intensity": 200.0,
        "ink_share": 24 / 784,
        "centre_row": pytest.approx(6.5),
        "centre_col": pytest.approx(11.5),
        "box_height": 6.0,
        "box_width": 4.0,
    }


def test_review_features_count_words_and_unknown_ones() -> None:
    word_index = {"good": 1, "film": 2, "rare": 20_000}  # "rare" is past the vocabulary
    features = review_features(["Good film, rare zzz!", "good"], word_index)
    np.testing.assert_array_equal(features["length"], [4, 1])
    np.testing.assert_allclose(features["unknown_share"], [0.5, 0.0])
    np.testing.assert_allclose(features["word_rarity"], [np.log([2, 3]).mean(), np.log(2)])


def _calibrated(rng: np.random.Generator, low: float, high: float, rows: int):
    """Confidences uniform in [low, high], each right with that probability: a perfectly
    calibrated model, so the true accuracy is the mean confidence, (low + high) / 2."""
    confidence = rng.uniform(low, high, rows)
    return confidence, rng.random(rows) < confidence


@pytest.mark.parametrize(
    ("method", "expected"),
    [
        ("calibrated", 0.65),  # the true accuracy: it reads accuracy off the confidence
        ("confidence", 0.65),  # calibrated model: mean confidence is the accuracy
        # ATC's threshold is the 25% quantile of U(0.5, 1), 0.625; U(0.5, 0.8) has 0.175/0.3
        # of its rows above it: ATC assumes the shift keeps the threshold, and is off here.
        ("atc", 0.175 / 0.3),
    ],
)
def test_estimators_on_a_known_drop_in_accuracy(method: str, expected: float) -> None:
    rng = np.random.default_rng(3)
    fitted = estimate.fit(*_calibrated(rng, 0.5, 1.0, 20_000))
    confidence, correct = _calibrated(rng, 0.5, 0.8, 20_000)  # shifted: accuracy 0.65
    assert correct.mean() == pytest.approx(0.65, abs=0.01)
    assert fitted.estimate(method, confidence) == pytest.approx(expected, abs=0.02)


def test_atc_counts_the_share_above_its_threshold_with_ties() -> None:
    # Half the rows at 0.6 (half of them right), half at 1.0 (all right): 75% right. The
    # threshold sits at 0.6 with half the tied rows counted right: 0.5 + 0.5 * 0.5.
    confidence = np.r_[np.full(50, 0.6), np.full(50, 1.0)]
    correct = np.r_[np.full(25, True), np.full(25, False), np.full(50, True)]
    fitted = estimate.fit(confidence, correct)
    assert fitted.estimate("atc", confidence) == pytest.approx(0.75)
    assert fitted.atc_threshold == 0.6 and fitted.atc_tie_share == pytest.approx(0.5)
    assert fitted.estimate("atc", np.full(10, 1.0)) == 1.0
    assert fitted.estimate("atc", np.full(10, 0.6)) == pytest.approx(0.5)


def _unseen_rows(real: Path, dataset: str, rows: int) -> tuple[list[str], np.ndarray]:
    """Test inputs of the real data past the slices' rows. MNIST slices take the first 500
    test rows: the rows just after them are taken, since MNIST's test split is two writer
    populations (its first and last 5,000 rows: the last half's digits are measurably wider,
    a real shift monitoring flags). IMDb rows are drawn at random (a few may be shared)."""
    from keras_variants.data.preprocessing import png_base64

    if dataset == "mnist":
        with np.load(real / "mnist.npz") as m:
            unseen = slice(500, 500 + rows)
            return [png_base64(x) for x in m["x_test"][unseen]], m["y_test"][unseen]
    frame = pd.read_parquet(real / "imdb_reviews.parquet").query("split == 'test'")
    picked = frame.sample(rows, random_state=1)
    return picked["text"].tolist(), picked["label"].to_numpy()


@pytest.mark.parametrize("dataset", ["mnist", "imdb"])
def test_a_registered_version_has_a_profile_and_monitoring_sees_a_known_shift(
    smoke_run, smoke_config, real_data_dir: Path, dataset: str
) -> None:
    from keras_variants.monitoring.check import monitor
    from keras_variants.monitoring.ladders import served_answers
    from keras_variants.monitoring.stored import PROFILE_SHA_TAG, load_measurement
    from keras_variants.registry.versions import REGISTERED_MODELS, model_path
    from keras_variants.serving.saving import load_served
    from keras_variants.tracking.store import client_for

    client = client_for(smoke_config)
    name = REGISTERED_MODELS[dataset]
    version = client.get_model_version_by_alias(name, "champion")
    assert len(version.tags[PROFILE_SHA_TAG]) == 64
    measurement = load_measurement(client, version)
    names = [step["name"] for step in measurement["steps"]]
    assert names[:2] == ["clean", "clean, held out"] and measurement["alpha"] <= 0.05
    assert measurement["alpha_chosen_on"] == "clean"  # the rate reported is measured on others
    assert measurement["false_alarms_measured_on"] == "clean, held out"
    # The estimate's interval was calibrated and checked on windows left out of its fitting.
    assert measurement["estimator"] in measurement["estimators_tried"]
    held_out = measurement["steps"][1]["sizes"]["100"]["interval"]
    assert held_out["estimated"] == 40 and held_out["covered"] >= 36
    model = load_served(model_path(client, name, version.version))
    served = model.unwrap_python_model()

    inputs, labels = _unseen_rows(real_data_dir, dataset, 300)
    answers = served_answers(served, inputs)
    clean = monitor(client, name, version, model, inputs, answers)
    assert clean.checked and not clean.detected, clean.sentences()
    column = "digit" if dataset == "mnist" else "label"
    truth = np.mean(
        answers[column].to_numpy()
        == (labels if dataset == "mnist" else np.where(labels == 1, "positive", "negative"))
    )
    # Clean rows get a number, and its interval holds the truth.
    assert clean.estimate is not None and clean.estimate.withheld is None, clean.estimate
    assert clean.estimate.low <= truth <= clean.estimate.high
    assert clean.accuracy["estimated_accuracy_interval"] == [
        clean.estimate.low,
        clean.estimate.high,
    ]
    assert set(clean.metrics()) >= {
        "drift/detected",
        "estimated_accuracy",
        "estimated_accuracy/low",
        "estimated_accuracy/high",
        "drift/embedding/p_value",
    }
    few = monitor(client, name, version, model, inputs[:10], answers.iloc[:10])
    assert few.estimated_accuracy is None and few.accuracy["estimate_withheld"].startswith(
        "fewer than 50 rows"
    )

    if dataset == "mnist":  # turned a quarter: digits lie on their side
        from keras_variants.data.preprocessing import png_base64
        from keras_variants.model.uncertainty import rotated_digits

        shifted = [png_base64(p) for p in rotated_digits(served.stored_inputs(inputs), 90)]
        expected = "box_width"
    else:  # cut to their first 5 words
        shifted = [" ".join(text.split()[:5]) + " film" for text in inputs]
        expected = "length"
    drifted = monitor(client, name, version, model, shifted, served_answers(served, shifted))
    assert drifted.detected and drifted.drift["detected"] is True
    by_name = {s["name"]: s for s in drifted.drift["signals"]}
    assert by_name[expected]["drifted"] and by_name[expected]["sentence"]

    if dataset == "mnist":  # another kind of image in the digits' format: seen too
        from keras_variants.model.uncertainty import clothing_like

        clothes = [png_base64(p) for p in clothing_like(300, np.random.default_rng(1))]
        assert monitor(client, name, version, model, clothes,
                       served_answers(served, clothes)).detected  # fmt: skip
        step = next(s for s in measurement["steps"] if s["name"] == "clothing-like images")
        assert step["sizes"]["100"]["alarm_rate"] >= 0.9  # the registration measured it


def test_a_version_without_a_profile_is_not_checked(smoke_run, smoke_config) -> None:
    from keras_variants.monitoring.check import monitor
    from keras_variants.monitoring.stored import PROFILE_SHA_TAG, PROFILE_TAG
    from keras_variants.registry.versions import model_path
    from keras_variants.serving.saving import load_served
    from keras_variants.tracking.store import client_for

    client = client_for(smoke_config)
    name = "imdb-sentiment"
    champion = client.get_model_version_by_alias(name, "champion")
    source = champion.source  # a logged model's URI: its files' place, for this store's client
    if source.startswith("models:/"):
        source = client.get_logged_model(source.removeprefix("models:/")).artifact_location
    copy = client.create_model_version(name, source, champion.run_id)
    assert PROFILE_TAG not in copy.tags and PROFILE_SHA_TAG not in copy.tags
    # The copy has no profile (nor file hashes): the champion's own model answers for it.
    model = load_served(model_path(client, name, champion.version))
    texts = ["A fine film.", "Dull and long."]
    answers = pd.DataFrame([a.model_dump() for a in model.predict(texts)])
    result = monitor(client, name, copy, model, texts, answers)
    assert not result.checked and "no reference profile" in result.reason
    assert result.drift == {
        "detected": False,
        "checked": False,
        "reason": result.reason,
        "signals": [],
    }
    assert result.estimated_accuracy is None and result.metrics() == {}
    assert result.accuracy["estimate_withheld"] == result.reason
    client.delete_model_version(name, copy.version)


def _measured(rotated_45_alarms: float, clean_alarms: float) -> dict:
    """A hand-made measurement: clean windows chosen on and held out, and one shift."""

    def size(alarm_rate: float, windows: int, covered: int | None = None) -> dict:
        entry = {
            "windows": windows,
            "alarm_rate": alarm_rate,
            "signal_rates": {"box_width": alarm_rate},
            "true_accuracy": 0.9,
            "estimate": 0.88,
            "error": 0.02,
        }
        if covered is not None:
            entry["interval"] = {"estimated": windows, "covered": covered, "width": 0.08,
                                 "widest": 0.09}  # fmt: skip
        return entry

    return {
        "version": "mnist-classifier v3", "dataset": "mnist", "reference_rows": 10_000,
        "reference_sample": 1_000, "clean_windows": 40, "shift_windows": 10, "seconds": 4.2,
        "cpu_seconds": 3.1, "alpha": 0.05, "alphas_tried": [0.05, 0.01], "signals": ["a"] * 10,
        "alpha_chosen_on": "clean", "false_alarms_measured_on": "clean, held out",
        "estimator": "atc", "level": 0.9, "checked_up_to": {"500": "rotated 45°"},
        "estimators_tried": {"atc": {"held": 3, "pairs": 3, "width": 0.1, "error": 0.02}},
        "steps": [
            {"name": "clean", "rows": 2_000, "blind": None,
             "sizes": {"500": size(0.0, 40), "1000": size(0.0, 40)}},
            {"name": "clean, held out", "rows": 2_000, "blind": None,
             "sizes": {"500": size(clean_alarms, 40, 38), "1000": size(clean_alarms, 40, 40)}},
            {"name": "rotated 45°", "rows": 500, "blind": None,
             "sizes": {"100": size(rotated_45_alarms, 10, 10),
                       "500": size(rotated_45_alarms, 10, 8)}},
        ],
    }  # fmt: skip


@pytest.mark.parametrize(
    ("rotated", "clean", "verdicts"),
    [
        (1.0, 0.025, ["False alarms on clean windows (windows not used to choose it, 'clean, "
                      "held out'): 2% at 500 rows, 2% at 1000 rows (target at most 5%: meets)",
                      "Detection, rotated 45°, 500 rows: 100% (target at least 95%: meets)"]),
        (0.9, 0.075, ["False alarms on clean windows (windows not used to choose it, 'clean, "
                      "held out'): 8% at 500 rows, 8% at 1000 rows (target at most 5%: misses)",
                      "Detection, rotated 45°, 500 rows: 90% (target at least 95%: misses)"]),
    ],
)  # fmt: skip
def test_the_report_says_which_targets_are_met_and_how_windows_were_drawn(
    rotated: float, clean: float, verdicts: list[str]
) -> None:
    from keras_variants.reporting.monitoring_report import _rows, summary_lines

    lines = summary_lines(_measured(rotated, clean))
    for verdict in verdicts:
        assert any(line.startswith(verdict) for line in lines), lines
    assert "drawn without replacement from two disjoint sets of 2,000 rows" in lines[0]
    assert "10 per size and shift from 500 of its rows" in lines[0]
    assert "4.2 s, 3.1 s CPU" in lines[0]
    _, rows = _rows(_measured(rotated, clean))
    assert rows[2][:2] == ["rotated 45°", "500"]
    assert rows[2][3].endswith("of 10") and rows[2][4] == "n/a"  # no 1,000-row windows


def test_the_report_and_the_card_show_where_the_interval_held_on_shifts_left_out() -> None:
    from keras_variants.monitoring.coverage import coverage_rows, coverage_verdict

    measured = _measured(1.0, 0.025)
    header, rows = coverage_rows(measured)
    assert header[-3:] == ["100 rows", "500 rows", "1000 rows"]
    held_out, rotated = rows
    assert held_out[0] == "clean, held out" and held_out[-1] == "40/40 held, width 0.08"
    assert rotated[:4] == ["rotated 45°", "0.900", "0.880", "0.020"]
    assert rotated[-2] == "8/10 held, width 0.08" and rotated[-1] == "-"
    # 8 of 10 is under the 90% claimed: the verdict names it.
    assert coverage_verdict(measured) == (
        "Intervals held less often than 90% on: rotated 45° at 500 rows (8/10)."
    )
    measured["steps"][2]["sizes"]["500"]["interval"]["covered"] = 9
    assert coverage_verdict(measured).startswith("On every shift left out of the fitting")


def test_the_clean_rows_widths_by_size_say_from_how_many_rows_they_are_narrow() -> None:
    """Clean held-out windows of sizes drawn for the estimate alone (no alarm rate) get
    their own table, not a column of the coverage table; the verdict names the first size
    from which every interval was at most 0.10 wide and they held."""
    from keras_variants.monitoring.coverage import (
        clean_width_rows,
        clean_width_verdict,
        coverage_rows,
    )
    from keras_variants.reporting.monitoring_report import to_html, to_markdown

    measured = _measured(1.0, 0.025)
    clean = measured["steps"][1]["sizes"]
    for size, widest, covered in (("50", 0.21, 40), ("100", 0.12, 39), ("200", 0.095, 35)):
        found = {"estimated": 40, "covered": covered, "width": widest - 0.01, "widest": widest}
        clean[size] = {"estimate_windows": 40, "interval": found}
    header, rows = coverage_rows(measured)
    assert header[-3:] == ["100 rows", "500 rows", "1000 rows"]  # no 50 or 200 column
    header, rows = clean_width_rows(measured)
    assert [r[0] for r in rows] == ["50", "100", "200", "500", "1000"]
    assert rows[2] == ["200", "40", "35/40", "0.085", "0.095", "yes"]
    # 200 rows were narrow enough but held 35 times in 40, under 90%: from 500 on.
    assert clean_width_verdict(measured) == (
        "On clean held-out rows, from 500 rows on (of the sizes tried) every interval was "
        "at most 0.10 wide and they held at least 90% of the time."
    )
    clean["1000"]["interval"]["widest"] = 0.11
    assert clean_width_verdict(measured).startswith("On clean held-out rows, not every")
    assert "| 200 | 40 | 35/40 | 0.085 | 0.095 | yes |" in to_markdown(measured)
    assert "<td>35/40</td>" in to_html(measured)


def test_the_report_names_a_shift_the_model_is_blind_to_with_its_reason() -> None:
    from keras_variants.reporting.monitoring_report import summary_lines

    measured = _measured(1.0, 0.025)
    assert not any(line.startswith("Blind by design") for line in summary_lines(measured))
    measured["steps"][2] = measured["steps"][2] | {"name": "shuffled words", "blind": "no order"}
    assert summary_lines(measured)[-1] == "Blind by design: shuffled words (no order)."


def test_the_model_card_shows_the_coverage_and_where_the_scorings_are() -> None:
    from keras_variants.registry.model_card import CardFacts, card_markdown

    facts = CardFacts(
        model="mnist-classifier", version="3", variant="mnist_cnn", label="mnist_cnn",
        dataset="mnist", run_id="r1", architecture="cnn", parameter_count="1",
        training={}, data_sha256={}, test={"test/accuracy": 0.99},
        monitoring=_measured(1.0, 0.025),
    )  # fmt: skip
    card = card_markdown(facts)
    estimate = card.split("## Accuracy estimated without labels\n", 1)[1]
    assert "with a 90% interval" in estimate and "rotated 45° at 500 rows" in estimate
    assert "| rotated 45° | 0.900 | 0.880 | 0.020 | 10/10 held, width 0.08 |" in estimate
    assert "Intervals held less often than 90% on: rotated 45° at 500 rows (8/10)." in estimate
    # Clean rows' widths in one line: the card is the registry's description (5,000 chars).
    assert (
        "Clean held-out rows, mean width (widest) by rows: 500 rows 0.080 (0.090, held "
        "38/40), 1000 rows 0.080 (0.090, held 40/40). On clean held-out rows, from 500 rows"
        in estimate
    )
    history = card.split("## Scoring history\n", 1)[1]
    assert history.startswith("Every scoring is a run of the MLflow experiment "
                              "`mnist-classifier scoring` (made by the first scoring)")  # fmt: skip
    assert "images of any format, size and layout" in card  # what is done to an image
    uncalibrated = card_markdown(CardFacts(**{**facts.__dict__, "monitoring": None}))
    assert "No interval was calibrated for this version" in uncalibrated
