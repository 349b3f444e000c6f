"""Studies: every selected variant (and sweep point) trained once per seed and summarized
across seeds (the lecture's claims decided from them: :mod:`~keras_variants.studies.claims`).

Pure functions over plain data: parsing ``--seeds`` and ``--set`` (a study's trials are
:mod:`keras_variants.config.trials`), and aggregates with confidence intervals (SciPy).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from pydantic import ValidationError

from keras_variants.config.pipeline import MAX_SEEDS, SeedPlan
from keras_variants.config.trials import Sweeps, apply
from keras_variants.config.variants import VARIANTS
from keras_variants.errors import ConfigError

# Fields a sweep may set; the rest (name, data set, architecture, input) define a variant.
SWEEPABLE = ("hidden_units", "l2", "dropout", "optimizer", "learning_rate", "epochs", "batch_size")
AGGREGATED = (
    "test/accuracy",
    "val/loss_min",
    "validation_loss_min_epoch",
    "val/loss_last",
    "val/loss_rise",
)


def parse_seeds(text: str) -> tuple[int, ...]:
    """``"5"`` is seeds 0-4; ``"0,3,7"`` those seeds."""
    try:
        if "," not in text:
            count = int(text)
            if count < 1:
                raise ValueError
            return tuple(range(count))
        seeds = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise ConfigError(
            f"--seeds {text!r}: give a count (5 means seeds 0-4) or a list like 0,3,7"
        ) from None
    if len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise ConfigError(f"--seeds {text!r}: seeds must be distinct and not negative")
    return seeds


def parse_seed_plan(text: str) -> SeedPlan | None:
    """``"auto"``: seeds added until the lecture's claims are decided (:class:`SeedPlan`'s
    first seeds, doubled at each look, at most its cap); ``"auto:N"``: at most N seeds; None for a
    count or a list (:func:`parse_seeds`)."""
    word, _, cap = text.partition(":")
    if word != "auto":
        return None
    plan = SeedPlan()
    try:
        return SeedPlan(cap=int(cap)) if cap else plan
    except (ValueError, ValidationError):
        raise ConfigError(
            f"--seeds {text!r}: write auto (at most {plan.cap} seeds) or auto:N, N the most "
            f"seeds, from {plan.first + 1} to {MAX_SEEDS}"
        ) from None


def parse_sweep(text: str) -> tuple[str, str, tuple[object, ...]]:
    """``"imdb_dropout.dropout=0.2,0.5"`` as (variant, field, typed values), each value
    checked against the variant's config."""
    target, _, values = text.partition("=")
    name, _, key = target.partition(".")
    if name not in VARIANTS:
        raise ConfigError(
            f"--set {text}: unknown variant {name!r}; choose from {', '.join(VARIANTS)}"
        )
    if key not in SWEEPABLE:
        raise ConfigError(
            f"--set {text}: {key!r} cannot be swept; choose from {', '.join(SWEEPABLE)}"
        )
    if not values:
        raise ConfigError(f"--set {text}: no values; write it as {name}.{key}=VALUE,VALUE")
    typed = []
    for raw in values.split(","):
        value: object = tuple(raw.split("x")) if key == "hidden_units" else raw
        try:
            typed.append(getattr(apply(VARIANTS[name], {key: value}), key))
        except ValidationError as exc:
            reason = exc.errors()[0]["msg"].lower()
            raise ConfigError(f"--set {text}: {key}={raw!r} is not valid ({reason})") from None
    return name, key, tuple(dict.fromkeys(typed))


def parse_sweeps(texts: Sequence[str]) -> Sweeps:
    sweeps: Sweeps = {}
    for text in texts:
        name, key, values = parse_sweep(text)
        sweeps.setdefault(name, {})[key] = values
    return sweeps


def run_measures(
    metrics: Mapping[str, float], validation_loss: Sequence[float]
) -> dict[str, float]:
    """The measures a study compares, from one run's metrics and validation-loss curve."""
    last, lowest = validation_loss[-1], min(validation_loss)
    return {
        "test/accuracy": metrics["test/accuracy"],
        "val/loss_min": lowest,
        "validation_loss_min_epoch": metrics["validation_loss_min_epoch"],
        "val/loss_last": last,
        "val/loss_rise": last - lowest,
    }


@dataclass(frozen=True)
class Summary:
    """One measure of one variant (or sweep point) across seeds."""

    n: int
    mean: float
    std: float  # sample standard deviation; NaN for one seed
    low: float  # 95% confidence interval of the mean (t distribution); NaN for one seed
    high: float


def summarize(values: Sequence[float]) -> Summary:
    data = np.asarray(values, dtype=np.float64)
    n, mean = len(data), float(data.mean())
    if n < 2:
        return Summary(n, mean, math.nan, math.nan, math.nan)
    std = float(data.std(ddof=1))
    if std == 0:
        return Summary(n, mean, 0.0, mean, mean)
    from scipy import stats  # on use: the command line's checks import this module

    low, high = stats.t.interval(0.95, n - 1, loc=mean, scale=stats.sem(data))
    return Summary(n, mean, std, float(low), float(high))


def aggregate(runs: Sequence[tuple[str, Mapping[str, float]]]) -> dict[str, dict[str, Summary]]:
    """Per label, every measure summarized across its runs (one per seed)."""
    by_label: dict[str, list[Mapping[str, float]]] = {}
    for label, measures in runs:
        by_label.setdefault(label, []).append(measures)
    return {
        label: {m: summarize([r[m] for r in rows]) for m in AGGREGATED if all(m in r for r in rows)}
        for label, rows in by_label.items()
    }


def summary_metrics(summaries: Mapping[str, Mapping[str, Summary]]) -> dict[str, float]:
    """MLflow metric keys for aggregates: ``"<label>/<measure>/mean"`` (also ``std``,
    ``ci95_low``, ``ci95_high`` and ``n``); NaN statistics of single runs are left out."""
    metrics = {}
    for label, measures in summaries.items():
        for measure, s in measures.items():
            stats_ = {
                "mean": s.mean,
                "std": s.std,
                "ci95_low": s.low,
                "ci95_high": s.high,
                "n": s.n,
            }
            for stat, value in stats_.items():
                if not math.isnan(value):
                    metrics[f"{label}/{measure}/{stat}"] = float(value)
    return metrics
