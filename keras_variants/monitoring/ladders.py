"""The known shifts (the ladders) and the measurement of the monitors on them: how often the
drift signals fire on windows of 100, 500 and 1,000 rows of each shift, how often on clean
held-out windows (false alarms), and how far each accuracy estimate is from the truth.

Measured when a version is registered, on its held-out rows split in two halves: a
reference built from one half (a sample of at most 1,000 rows observed, the one the
version's profile keeps), windows drawn without replacement from the other: from 2,000
clean rows (false alarms: 40 windows per size), or from 500 of its rows shifted (10 windows
per size; none of 1,000 rows, see :func:`_windows`): digits rotated 15-90 degrees, images of
clothing in Fashion-MNIST's manner instead of digits (synthetic), reviews with
their words shuffled, replaced by random vocabulary words, or cut to their first 20 words,
and up to 500 rows of one class only. The shifted inputs are sent as users send them (PNG,
text) and go through the served model's own preprocessing and model, once per row. The
measurement chooses
the family-wise level ``alpha`` (the largest of :data:`ALPHAS` whose false-alarm rate on
clean windows of 500 rows is at most 5%) and the accuracy estimator (the smallest error on
clean data and the mild shifts), which the version's profile then carries.

Blind by design: a bag-of-words model's inputs and outputs do not change when a review's
words are shuffled, so no signal here can see word order.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits  # comes with scikit-learn, as SciPy does

from keras_variants.config.variants import NUM_WORDS, SCORING_BATCH_ROWS
from keras_variants.data.preprocessing import INDEX_FROM, png_base64, tokenize
from keras_variants.monitoring.drift import MMD_ROWS, tests
from keras_variants.monitoring.estimate import ESTIMATORS
from keras_variants.monitoring.observe import Observed, observe, sample_rows
from keras_variants.monitoring.profile import Profile, answered, build_profile
from keras_variants.monitoring.signals import bonferroni, gaussian_kernel, mmd_of_kernel
from keras_variants.serving.answers import ServedModel, answers_frame

WINDOW_SIZES = (100, 500, 1_000)
WINDOWS = 10  # per shift and window size
CLEAN_WINDOWS = 40  # per window size: the false-alarm rate needs more
CLEAN_ROWS = 2_000  # clean held-out rows the clean windows are drawn from, without replacement
SHIFT_ROWS = 500  # rows per shifted pool (and at most this many of the one class)
ALPHAS = (0.05, 0.02, 0.01, 0.005)
FALSE_ALARM_TARGET, TARGET_SIZE = 0.05, 500
ROTATIONS = (15, 30, 45, 60, 90)
CUT_WORDS = 20
MILD = {"mnist": ("clean", "rotated 15°", "rotated 30°"), "imdb": ("clean", "shuffled words")}
BLIND = {"shuffled words": "a bag-of-words model cannot see word order: same inputs, same answers"}
CLOTHING_STEP = "clothing-like images"  # another kind of image (model.uncertainty.clothing_like)
NO_TRUTH = ("random words", CLOTHING_STEP)  # inputs without a true label


@dataclass(frozen=True)
class Step:
    name: str
    observed: Observed
    labels: np.ndarray | None  # None: no true label (NO_TRUTH)


def shifted_inputs(
    served: ServedModel, inputs: list[str], rng: np.random.Generator
) -> dict[str, list[str]]:
    """The shifted versions of ``inputs``, as users would send them."""
    if served.variant.dataset == "mnist":
        from keras_variants.model.uncertainty import clothing_like, rotated_digits

        pixels = served.stored_inputs(inputs)
        rotated = {
            f"rotated {angle}°": [png_base64(p) for p in rotated_digits(pixels, angle)]
            for angle in ROTATIONS
        }
        return rotated | {CLOTHING_STEP: [png_base64(p) for p in clothing_like(len(inputs), rng)]}
    vocabulary = [w for w, rank in served.word_index.items() if rank + INDEX_FROM < NUM_WORDS]
    words = [tokenize(text) for text in inputs]
    return {
        "shuffled words": [" ".join(rng.permutation(w)) for w in words],
        "random words": [" ".join(rng.choice(vocabulary, max(len(w), 1))) for w in words],
        f"cut to {CUT_WORDS} words": [" ".join(w[:CUT_WORDS]) for w in words],
    }


def served_answers(served: ServedModel, inputs: list[str]) -> pd.DataFrame:
    """The served answers to ``inputs``, batched as the gate batches."""
    answers = []
    for start in range(0, len(inputs), SCORING_BATCH_ROWS):
        answers += served.predict(None, inputs[start : start + SCORING_BATCH_ROWS])
    return answers_frame(served.variant.dataset, answers)


def measure(
    served: ServedModel, inputs: list[str], labels: np.ndarray, predictions: pd.DataFrame, seed: int
) -> tuple[Profile, dict[str, Any]]:
    """The version's profile (answers and estimators on every held-out row) and the
    measurement of its monitors on the ladders; ``predictions``: the served answers to
    ``inputs`` (the gate's). The profile's reference sample is the one the measurement
    used, so its measured rates are those of the reference a scoring is compared with."""
    started, cpu = time.perf_counter(), time.process_time()
    # Hundreds of small matrix products: one BLAS thread each spends a tenth of the CPU
    # time that threads waiting on each other do on a busy machine.
    with threadpool_limits(1):
        profile, result = _measure(served, inputs, labels, predictions, seed)
    result["seconds"] = round(time.perf_counter() - started, 2)
    result["cpu_seconds"] = round(time.process_time() - cpu, 2)
    return profile, result


def _measure(
    served: ServedModel, inputs: list[str], labels: np.ndarray, predictions: pd.DataFrame, seed: int
) -> tuple[Profile, dict[str, Any]]:
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    order = rng.permutation(len(inputs))
    half = len(inputs) // 2
    reference_rows, pool_rows = np.sort(order[:half]), order[half:]
    sample = sample_rows(len(reference_rows), np.random.default_rng(seed))
    sampled = reference_rows[sample]
    observed = observe(served, [inputs[i] for i in sampled], predictions.iloc[sampled])
    reference = build_profile(
        served, [inputs[i] for i in reference_rows], predictions.iloc[reference_rows],
        labels[reference_rows], seed, sampled=(sample, observed),
    )  # fmt: skip
    clean_rows = np.sort(pool_rows[:CLEAN_ROWS])
    top = int(np.bincount(labels[pool_rows]).argmax())
    one_class = np.sort(pool_rows[labels[pool_rows] == top][:SHIFT_ROWS])
    held = np.union1d(clean_rows, one_class)  # observed once
    pool = observe(served, [inputs[i] for i in held], predictions.iloc[held])
    steps = [
        Step(name, pool.take(np.searchsorted(held, rows)), labels[rows])
        for name, rows in (("clean", clean_rows), ("one class only", one_class))
    ]
    shifted_rows = np.sort(pool_rows[:SHIFT_ROWS])
    originals = [inputs[i] for i in shifted_rows]
    for name, shifted in shifted_inputs(served, originals, rng).items():
        truth = None if name in NO_TRUTH else labels[shifted_rows]
        steps.append(Step(name, observe(served, shifted), truth))
    windows = [_windows(reference, step, rng) for step in steps]
    result = summarize(reference, steps, windows)
    result["reference_sample"] = len(observed)
    result["clean_windows"], result["shift_windows"] = CLEAN_WINDOWS, WINDOWS
    profile = replace(
        reference, **answered(served.variant.dataset, predictions, labels),
        alpha=result["alpha"], estimator=result["estimator"],
        expected_error={int(k): v for k, v in result["expected_error"].items()},
    )  # fmt: skip
    return profile, result


def _windows(reference: Profile, step: Step, rng: np.random.Generator) -> dict[int, list[dict]]:
    """Per window size: each window's p-values, true accuracy and estimates. Windows are
    drawn without replacement; sizes larger than a step's rows are skipped: windows drawn
    with replacement repeat rows, which the tests take for evidence (measured: shuffled
    reviews, invisible to a bag-of-words model, flagged in 5 of 10 such 1,000-row windows
    drawn from 500 rows, 0 of 10 at 500). The embedding's kernel is computed once per step."""
    out: dict[int, list[dict]] = {}
    count = CLEAN_WINDOWS if step.name == "clean" else WINDOWS
    theirs = reference.reference.hidden[rng.permutation(len(reference.reference))[:MMD_ROWS]]
    kernel = gaussian_kernel(np.concatenate([theirs, step.observed.hidden]), reference.bandwidth)
    for size in WINDOW_SIZES:
        if size > len(step.observed):
            continue
        out[size] = []
        for _ in range(count):
            rows = rng.choice(len(step.observed), size, replace=False)
            window = step.observed.take(rows)
            pooled = np.r_[np.arange(len(theirs)), len(theirs) + rng.permutation(rows)[:MMD_ROWS]]
            embedding = mmd_of_kernel(kernel[np.ix_(pooled, pooled)], len(theirs), rng)
            results = tests(reference, window, rng, embedding)
            truth = None
            if step.labels is not None:
                truth = float(np.mean(window.classes == step.labels[rows]))
            estimates = {e: reference.estimators.estimate(e, window.confidence) for e in ESTIMATORS}
            out[size].append(
                {
                    "p": {k: t.p_value for k, t in results.items()},
                    "truth": truth,
                    "estimates": estimates,
                }
            )
    return out


def _alarm(window: dict, alpha: float) -> bool:
    return min(window["p"].values()) < bonferroni(alpha, len(window["p"]))


def summarize(
    reference: Profile, steps: list[Step], windows: list[dict[int, list[dict]]]
) -> dict[str, Any]:
    """Choose ``alpha`` and the estimator from the measured windows; the rates and errors."""
    clean = windows[0].get(TARGET_SIZE) or next(iter(windows[0].values()), [])
    alpha = next(
        (a for a in ALPHAS if np.mean([_alarm(w, a) for w in clean]) <= FALSE_ALARM_TARGET),
        ALPHAS[-1],
    )
    rows = []
    for step, per_size in zip(steps, windows, strict=True):
        sizes = {}
        for size, measured in per_size.items():
            threshold = bonferroni(alpha, len(measured[0]["p"]))
            signals = {
                n: float(np.mean([w["p"][n] < threshold for w in measured]))
                for n in measured[0]["p"]
            }
            entry: dict[str, Any] = {
                "windows": len(measured),
                "alarm_rate": float(np.mean([_alarm(w, alpha) for w in measured])),
                "signal_rates": signals,
            }
            if measured[0]["truth"] is not None:
                truth = np.array([w["truth"] for w in measured])
                entry["true_accuracy"] = float(truth.mean())
                entry["estimates"] = {
                    e: {
                        "mean": float(np.mean([w["estimates"][e] for w in measured])),
                        "error": float(
                            np.mean(np.abs([w["estimates"][e] for w in measured] - truth))
                        ),
                    }
                    for e in ESTIMATORS
                }
            sizes[str(size)] = entry
        rows.append(
            {
                "name": step.name,
                "rows": len(step.observed),
                "blind": BLIND.get(step.name),
                "sizes": sizes,
            }
        )
    mild = [r for r in rows if r["name"] in MILD[reference.dataset]]

    def error(estimator: str) -> float:
        values = [
            s["estimates"][estimator]["error"]
            for r in mild
            for s in r["sizes"].values()
            if "estimates" in s
        ]
        return float(np.mean(values)) if values else float("inf")

    estimator = min(ESTIMATORS, key=error)
    expected = {
        size: entry["estimates"][estimator]["error"]
        for size, entry in rows[0]["sizes"].items()
        if "estimates" in entry
    }
    return {
        "dataset": reference.dataset,
        "reference_rows": reference.rows,
        "alpha": alpha,
        "alphas_tried": list(ALPHAS),
        "false_alarm_target": FALSE_ALARM_TARGET,
        "signals": list(windows[0][next(iter(windows[0]))][0]["p"]) if windows[0] else [],
        "estimator": estimator,
        "estimator_errors": {e: error(e) for e in ESTIMATORS},
        "expected_error": expected,
        "steps": rows,
    }
