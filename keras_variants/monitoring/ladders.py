"""The measurement of a version's monitors on the known shifts (the ladders,
:mod:`.shifts`): how often the drift signals fire on windows of each shift and on clean
held-out windows (false alarms), and the accuracy estimate's interval: calibrated on the
shifts and measured on shifts it was not fitted on.

Measured when a version is registered, on its held-out rows split in two halves: a
reference built from one half (a sample of at most 1,000 rows observed, the one the
version's profile keeps), windows drawn without replacement from the other: from two
disjoint sets of up to 2,000 clean rows (``clean``: the family-wise level ``alpha`` is
chosen on its windows, the largest of :data:`ALPHAS` that raises at most one alarm in 40
at every window size: :func:`allowed_alarms`; ``clean, held out``: the false-alarm rates
reported are measured on its windows), from up to 500 rows of one class only, and from
500 of its rows shifted, sent as users send them (PNG, text) through the served model's
own preprocessing and model.

Windows of 100, 500 and 1,000 rows measure the signals (40 per clean set and size, 10 per
shift; none larger than its rows, see :func:`_drawn`). For the accuracy estimate, windows
of 50 rows (40 clean, 20 per shift) and 10 more of 100 rows per shift join them,
and clean held-out windows of :data:`CLEAN_WIDTH_SIZES` rows measure its width on clean
rows by their number: its interval is calibrated per window size (:mod:`.interval`) on
every window, through the same procedure a scoring goes through
(:func:`.assess.assess`'s parts). Its coverage is measured with each shift left out of
the fitting in turn and the ``clean, held out`` windows never fitted on; the estimator
(of :data:`.estimate.ESTIMATORS`) is the one
whose intervals held on the most shifts left out, the closest to the truth among those
(the smallest mean error over the labelled windows; measured: the plain mean confidence
held as often as ATC on IMDb but overstated clean accuracy by 0.07). The number printed
inside its interval is the estimate of the one closest to the truth (:func:`choose_point`).

Blind by design: a bag-of-words model's inputs and outputs do not change when a review's
words are shuffled, so no signal here can see word order.

Over 300 lines on purpose: one measurement, whose windows, halves and choices (the level
``alpha``, the estimator) depend on one another; split, a reader would follow one sample
of rows across files.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits  # comes with scikit-learn, as SciPy does

from keras_variants.config.variants import SCORING_BATCH_ROWS
from keras_variants.data.ragged import take_rows
from keras_variants.monitoring import interval
from keras_variants.monitoring.assess import distances, estimates, remix
from keras_variants.monitoring.drift import signal_names, tests
from keras_variants.monitoring.estimate import ESTIMATORS
from keras_variants.monitoring.held_out import held_out_coverage, holds
from keras_variants.monitoring.interval import Window, calibrate
from keras_variants.monitoring.observe import Observed, observe, sample_rows
from keras_variants.monitoring.profile import Profile, answered, build_profile
from keras_variants.monitoring.shifts import NO_TRUTH, shifted_inputs
from keras_variants.monitoring.signals import (
    MMD_ROWS,
    bonferroni,
    class_test,
    gaussian_kernel,
    mmd_of_kernel,
)
from keras_variants.serving.answers import ServedModel, Stored, answers_frame

WINDOW_SIZES = (100, 500, 1_000)  # the signals' windows
WINDOWS = 10  # per shift and window size
CLEAN_WINDOWS = 40  # per clean set and window size: the false-alarm rate needs more
ESTIMATE_WINDOWS = 20  # per shift below 500 rows, for the estimate (clean: CLEAN_WINDOWS)
# Clean held-out windows of these sizes too, for the estimate alone: its interval's width
# on clean rows by their number (the sampling part shrinks with it).
CLEAN_WIDTH_SIZES = (50, 100, 150, 200, 300, 500, 1_000)
CLEAN_ROWS = 2_000  # clean held-out rows per clean set, drawn without replacement
SHIFT_ROWS = 500  # rows per shifted pool (and at most this many of the one class)
ALPHAS = (0.05, 0.02, 0.01, 0.005, 0.002, 0.001)
FALSE_ALARM_TARGET, TARGET_SIZE = 0.05, 500
FIT, CHECK = "clean", "clean, held out"  # the clean windows chosen on, and measured on
ONE_CLASS = "one class only"
BLIND = {"shuffled words": "a bag-of-words model cannot see word order: same inputs, same answers"}


@dataclass(frozen=True)
class Step:
    name: str
    observed: Observed
    labels: np.ndarray | None  # None: no true label (NO_TRUTH)


@dataclass(frozen=True)
class Drawn:
    """One window of a step: its rows (positions in the step) and every signal's p-value,
    or only the predicted classes' for a window drawn for the estimate alone."""

    rows: np.ndarray
    p: dict[str, float]

    @property
    def signals(self) -> bool:
        return len(self.p) > 1


def served_answers(served: ServedModel, inputs: list[str]) -> pd.DataFrame:
    """The served answers to ``inputs``, batched as the gate batches."""
    answers = []
    for start in range(0, len(inputs), SCORING_BATCH_ROWS):
        answers += served.predict(None, inputs[start : start + SCORING_BATCH_ROWS])
    return answers_frame(served.variant.dataset, answers)


def measure(
    served: ServedModel,
    inputs: list[str],
    labels: np.ndarray,
    predictions: pd.DataFrame,
    seed: int,
    stored: Stored | None = None,
) -> tuple[Profile, dict[str, Any]]:
    """The version's profile (answers and estimators on every held-out row, the chosen
    settings and the estimate's calibrated interval) and the measurement of its monitors
    on the ladders; ``predictions``: the served answers to ``inputs`` (the gate's);
    ``stored``: what the served model decoded ``inputs`` into on the way (else they are
    decoded again). The profile's reference sample is the one the measurement used, so its
    measured rates are those of the reference a scoring is compared with."""
    started, cpu = time.perf_counter(), time.process_time()
    # Hundreds of small matrix products: one BLAS thread each spends a tenth of the CPU
    # time that threads waiting on each other do on a busy machine.
    with threadpool_limits(1):
        profile, result = _measure(served, inputs, labels, predictions, seed, stored)
    result["seconds"] = round(time.perf_counter() - started, 2)
    result["cpu_seconds"] = round(time.process_time() - cpu, 2)
    return profile, result


def _measure(
    served: ServedModel,
    inputs: list[str],
    labels: np.ndarray,
    predictions: pd.DataFrame,
    seed: int,
    stored: Stored | None,
) -> tuple[Profile, dict[str, Any]]:
    def observed_rows(rows: np.ndarray) -> Observed:  # the gate's rows, decoded once
        decoded = None if stored is None else take_rows(stored, rows)
        return observe(served, [inputs[i] for i in rows], predictions.iloc[rows], decoded)

    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    order = rng.permutation(len(inputs))
    half = len(inputs) // 2
    reference_rows, pool_rows = np.sort(order[:half]), order[half:]
    sample = sample_rows(len(reference_rows), np.random.default_rng(seed))
    sampled = reference_rows[sample]
    observed = observed_rows(sampled)
    reference = build_profile(
        served, [inputs[i] for i in reference_rows], predictions.iloc[reference_rows],
        labels[reference_rows], seed, sampled=(sample, observed),
    )  # fmt: skip
    clean = min(CLEAN_ROWS, len(pool_rows) // 2)
    fit_rows, check_rows = np.sort(pool_rows[:clean]), np.sort(pool_rows[clean : 2 * clean])
    top = int(np.bincount(labels[pool_rows]).argmax())
    one_class = np.sort(pool_rows[labels[pool_rows] == top][:SHIFT_ROWS])
    held = np.union1d(np.union1d(fit_rows, check_rows), one_class)  # observed once
    pool = observed_rows(held)
    steps = [
        Step(name, pool.take(np.searchsorted(held, rows)), labels[rows])
        for name, rows in ((FIT, fit_rows), (CHECK, check_rows), (ONE_CLASS, one_class))
    ]
    shifted_rows = np.sort(pool_rows[:SHIFT_ROWS])
    originals = [inputs[i] for i in shifted_rows]
    for name, shifted in shifted_inputs(served, originals, rng).items():
        truth = None if name in NO_TRUTH else labels[shifted_rows]
        steps.append(Step(name, observe(served, shifted), truth))
    theirs = reference.distance_rows()
    kernels = [
        gaussian_kernel(
            np.concatenate([reference.reference.hidden[theirs], step.observed.hidden]),
            reference.bandwidth,
        )
        for step in steps
    ]
    widths = np.random.default_rng([seed, 1])  # the widths' windows leave the others as they were
    drawn = [
        _drawn(reference, s, kernel, rng, widths) for s, kernel in zip(steps, kernels, strict=True)
    ]
    alpha = choose_alpha(drawn[0])
    profile = replace(reference, alpha=alpha)
    windows = _calibration_windows(profile, steps, drawn, kernels)
    chosen, tried = choose_estimator(windows)
    point = choose_point(chosen, tried)
    coverage = held_out_coverage(windows[chosen], FIT, CHECK, windows[point])
    envelopes = calibrate(windows[chosen], FIT)
    result = summarize(profile, steps, drawn, alpha, windows[chosen], coverage)
    result |= {
        "reference_sample": len(observed),
        "clean_windows": CLEAN_WINDOWS,
        "shift_windows": WINDOWS,
        "estimate_windows": ESTIMATE_WINDOWS,
        "estimator": chosen,
        "point_estimator": point,
        "estimators_tried": tried,
        "level": interval.LEVEL,
        "checked_up_to": {str(size): e.furthest for size, e in envelopes.items()},
    }
    profile = replace(
        profile, **answered(served.variant.dataset, predictions, labels),
        estimator=chosen, point_estimator=point, envelopes=envelopes,
    )  # fmt: skip
    return profile, result


def _drawn(
    reference: Profile,
    step: Step,
    kernel: np.ndarray,
    rng: np.random.Generator,
    widths: np.random.Generator,
) -> dict[int, list[Drawn]]:
    """Per window size, the step's windows with their signals' p-values. Windows are drawn
    without replacement; sizes larger than a step's rows are skipped: windows drawn with
    replacement repeat rows, which the tests take for evidence (measured: shuffled
    reviews, invisible to a bag-of-words model, flagged in 5 of 10 such 1,000-row windows
    drawn from 500 rows, 0 of 10 at 500). The embedding's test takes its blocks of the
    step's ``kernel`` (the reference's distance rows first). The clean held-out windows of
    :data:`CLEAN_WIDTH_SIZES` only are drawn with ``widths``."""
    out: dict[int, list[Drawn]] = {}
    clean = step.name in (FIT, CHECK)
    theirs = len(kernel) - len(step.observed)
    classes = len(reference.class_counts)
    ladder = {*interval.SIZES, *WINDOW_SIZES}
    for size in sorted(ladder | set(CLEAN_WIDTH_SIZES if step.name == CHECK else ())):
        if size > len(step.observed):
            continue
        draw = rng if size in ladder else widths
        signals = (CLEAN_WINDOWS if clean else WINDOWS) if size in WINDOW_SIZES else 0
        count = CLEAN_WINDOWS if clean else WINDOWS
        if size < max(interval.SIZES) and not clean:
            count = max(count, ESTIMATE_WINDOWS)
        out[size] = []
        for index in range(count):
            rows = draw.choice(len(step.observed), size, replace=False)
            window = step.observed.take(rows)
            if index < signals:
                pooled = np.r_[np.arange(theirs), theirs + rng.permutation(rows)[:MMD_ROWS]]
                embedding = mmd_of_kernel(kernel[np.ix_(pooled, pooled)], theirs, rng)
                results = tests(reference, window, rng, embedding)
                p = {name: test.p_value for name, test in results.items()}
            else:  # for the estimate alone: only the predicted classes' signal is used
                counts = np.bincount(window.classes, minlength=classes)[:classes]
                p = {"predicted_class": class_test(reference.class_counts, counts).p_value}
            out[size].append(Drawn(rows, p))
    return out


def allowed_alarms(windows: int, target: float = FALSE_ALARM_TARGET) -> int:
    """The most alarms a threshold may raise on ``windows`` clean windows for a new clean
    window's chance of an alarm to be at most ``target``: the new window is as likely as
    each of those to be the most extreme, so a threshold passed by ``k`` of ``n`` gives
    an alarm with probability at most (k + 1) / (n + 1) (the split-conformal bound). -1:
    too few windows to show any threshold meets it."""
    return int(np.floor(target * (windows + 1) + 1e-9)) - 1


def choose_alpha(clean: dict[int, list[Drawn]], signals: int | None = None) -> float:
    """The largest of :data:`ALPHAS` that raises no more alarms on the ``clean`` windows
    of any size than :func:`allowed_alarms` allows (the smallest when none does)."""
    measured = [[w for w in ws if w.signals] for ws in clean.values()]
    for alpha in ALPHAS:
        if all(
            sum(_alarm(w, alpha, signals) for w in ws) <= allowed_alarms(len(ws))
            for ws in measured
            if ws
        ):
            return alpha
    return ALPHAS[-1]


def _alarm(window: Drawn, alpha: float, signals: int | None = None) -> bool:
    return min(window.p.values()) < bonferroni(alpha, signals or len(window.p))


def _calibration_windows(
    profile: Profile, steps: list[Step], drawn: list[dict[int, list[Drawn]]], kernels: list
) -> dict[str, list[Window]]:
    """Per estimator, every window of every step as the interval's calibration sees it:
    its estimate and distances through the procedure a scoring goes through."""
    threshold = bonferroni(profile.alpha, len(signal_names(profile)))
    out: dict[str, list[Window]] = {name: [] for name in ESTIMATORS}
    for step, per_size, kernel in zip(steps, drawn, kernels, strict=True):
        for size, windows in per_size.items():
            calibrated = interval.size_for(size, interval.SIZES)  # as a scoring measures
            assert calibrated is not None
            for w in windows:
                window = step.observed.take(w.rows)
                weights = remix(profile, window.classes, w.p["predicted_class"] < threshold)
                measured = w.rows[:calibrated]  # a random subset: the rows were drawn at random
                far = distances(profile, step.observed.take(measured), weights, kernel, measured)
                truth = None
                if step.labels is not None:
                    truth = float(np.mean(window.classes == step.labels[w.rows]))
                for name, value in estimates(profile, window.confidence, weights).items():
                    out[name].append(Window(step.name, calibrated, size, far, value, truth))
    return {name: interval.with_sampling(windows) for name, windows in out.items()}


def choose_estimator(windows: dict[str, list[Window]]) -> tuple[str, dict[str, dict]]:
    """The estimator whose intervals held on the most (shift, window size) pairs left out
    of the fitting, the smallest mean error among those (then the narrowest); and each
    one's figures."""
    tried = {}
    for name, mine in windows.items():
        coverage = held_out_coverage(mine, FIT, CHECK)
        labelled = [e for e in coverage if "covered" in e]
        tried[name] = {
            "held": sum(holds(e) for e in coverage),
            "pairs": len(coverage),
            "width": float(np.mean([e["width"] for e in labelled])) if labelled else 1.0,
            "error": float(np.mean([e["error"] for e in coverage if "error" in e])),
        }
    chosen = max(tried, key=lambda n: (tried[n]["held"], -tried[n]["error"], -tried[n]["width"]))
    return chosen, tried


def choose_point(chosen: str, tried: dict[str, dict]) -> str:
    """The estimator whose estimate is printed inside ``chosen``'s interval: the one with
    the smallest mean error on the shifts (on a tie ``chosen``, then the first in
    :data:`.estimate.ESTIMATORS`); ``chosen`` when no error was measured. The interval's
    estimator is chosen for its intervals holding; one that over-states by a constant
    holds by a wide interval, and its own estimate then sits at the interval's edge
    (measured: a full run's ``imdb_dropout``, mean confidence 0.96 on test reviews 0.87
    right, atc 0.88, calibrated 0.88). The error is measured on the same shifts the point
    is chosen on: the best of three, so slightly optimistic."""
    measured = [n for n in tried if np.isfinite(tried[n]["error"])]
    if not measured:
        return chosen
    return min(measured, key=lambda n: (tried[n]["error"], n != chosen))


def summarize(
    profile: Profile,
    steps: list[Step],
    drawn: list[dict[int, list[Drawn]]],
    alpha: float,
    windows: list[Window],
    coverage: list[dict],
) -> dict[str, Any]:
    """The rates of the signals at ``alpha`` and the estimate's errors and coverage, per
    step and window size."""
    signals = len(signal_names(profile))
    threshold = bonferroni(alpha, signals)
    held_out = {(e["rung"], e["rows"]): e for e in coverage}
    rows = []
    for step, per_size in zip(steps, drawn, strict=True):
        sizes = {}
        for size, measured in per_size.items():
            tested = [w for w in measured if w.signals]
            entry: dict[str, Any] = {"windows": len(tested), "estimate_windows": len(measured)}
            if tested:
                entry["alarm_rate"] = float(np.mean([_alarm(w, alpha, signals) for w in tested]))
                entry["signal_rates"] = {
                    n: float(np.mean([w.p[n] < threshold for w in tested])) for n in tested[0].p
                }
            mine = [w for w in windows if w.rung == step.name and w.rows == size]
            if mine and mine[0].truth is not None:
                entry["true_accuracy"] = float(np.mean([w.truth for w in mine]))
                entry["estimate"] = float(np.mean([w.estimate for w in mine]))
                entry["error"] = float(np.mean([abs(w.estimate - w.truth) for w in mine]))
            found = held_out.get((step.name, size))
            if found:
                entry["interval"] = {
                    k: found[k] for k in ("estimated", "covered", "width", "widest") if k in found
                }
                if "estimate" in found:  # as a scoring prints it, with this rung left out
                    entry["estimate"], entry["error"] = found["estimate"], found["error"]
            sizes[str(size)] = entry
        rows.append(
            {
                "name": step.name,
                "rows": len(step.observed),
                "blind": BLIND.get(step.name),
                "truth": step.labels is not None,
                "sizes": sizes,
            }
        )
    return {
        "dataset": profile.dataset,
        "reference_rows": profile.rows,
        "alpha": alpha,
        "alphas_tried": list(ALPHAS),
        "alarms_allowed": allowed_alarms(CLEAN_WINDOWS),
        "false_alarm_target": FALSE_ALARM_TARGET,
        "alpha_chosen_on": FIT,
        "false_alarms_measured_on": CHECK,
        "signals": list(signal_names(profile)),
        "steps": rows,
    }
