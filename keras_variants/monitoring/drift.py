"""Drift of a window of new data against a version's reference profile: one signal per
input statistic, the predicted classes (label shift), the confidence and the entropy, and
the last hidden layer (embedding), each a test of :mod:`keras_variants.monitoring.signals`.

The signals of one window are one family of tests, corrected by Bonferroni: a signal drifts
when its p-value is below ``alpha / m`` (m signals), so the chance that a window of the
reference's own distribution raises any alarm is at most ``alpha``; ``alpha`` is the one the
measurement on clean windows chose (see :mod:`keras_variants.monitoring.ladders`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from keras_variants.monitoring.features import DESCRIPTIONS
from keras_variants.monitoring.observe import Observed
from keras_variants.monitoring.profile import Profile
from keras_variants.monitoring.signals import (
    MMD_ROWS,
    Test,
    bonferroni,
    class_test,
    ks_test,
    mmd_test,
)
from keras_variants.serving.answers import CLASS_NAMES

LEVELS = {"input": "check where these inputs come from (a changed source, truncation, "
          "another language or format) before trusting the scores"}  # fmt: skip


@dataclass(frozen=True)
class Signal:
    name: str
    statistic: float
    p_value: float
    threshold: float
    drifted: bool
    sentence: str | None

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def signal_names(profile: Profile) -> list[str]:
    return [*profile.reference.features, "predicted_class", "confidence", "entropy", "embedding"]


def tests(
    profile: Profile, window: Observed, rng: np.random.Generator, embedding: Test | None = None
) -> dict[str, Test]:
    """Every signal's test of ``window`` against ``profile``; ``embedding``: the MMD test
    when the caller computed it (from a kernel shared by many windows)."""
    reference = profile.reference
    out = {
        name: ks_test(reference.features[name], window.features[name])
        for name in reference.features
    }
    classes = len(profile.class_counts)
    out["predicted_class"] = class_test(
        profile.class_counts, np.bincount(window.classes, minlength=classes)[:classes]
    )
    out["confidence"] = ks_test(reference.confidence, window.confidence)
    out["entropy"] = ks_test(reference.entropy, window.entropy)
    if embedding is None:
        mine = window.hidden[rng.permutation(len(window))[:MMD_ROWS]]
        theirs = reference.hidden[rng.permutation(len(reference))[:MMD_ROWS]]
        embedding = mmd_test(theirs, mine, profile.bandwidth, rng)
    out["embedding"] = embedding
    return out


def judge(
    profile: Profile, window: Observed, results: dict[str, Test], alpha: float
) -> list[Signal]:
    """The signals of ``results`` at family-wise level ``alpha``, with a sentence for each
    one that drifted."""
    threshold = bonferroni(alpha, len(results))
    signals = []
    for name, test in results.items():
        drifted = test.p_value < threshold
        sentence = _sentence(profile, window, name) if drifted else None
        signals.append(Signal(name, test.statistic, test.p_value, threshold, drifted, sentence))
    return signals


def _sentence(profile: Profile, window: Observed, name: str) -> str:
    reference = profile.reference
    if name in reference.features:
        subject, lower, higher, unit = DESCRIPTIONS[name]
        mine, theirs = window.features[name], reference.features[name]
        verb = "are" if subject.endswith("s") and not subject.startswith("the") else "is"
        return (
            f"{subject} {verb} {_direction(mine, theirs, lower, higher)} than the reference: "
            f"median {_number(np.median(mine))} vs {_number(np.median(theirs))}"
            f"{' ' + unit if unit else ''}; {LEVELS['input']}"
        )
    if name == "predicted_class":
        names = CLASS_NAMES[profile.dataset]
        counts = np.bincount(window.classes, minlength=len(names))[: len(names)]
        mine = counts / max(counts.sum(), 1)
        theirs = profile.class_counts / max(profile.class_counts.sum(), 1)
        worst = int(np.argmax(np.abs(mine - theirs)))
        return (
            f"the predicted classes are mixed differently from the reference: '{names[worst]}' "
            f"is {mine[worst]:.0%} of the answers vs {theirs[worst]:.0%}; if the real mix of "
            "classes changed, fine (the accuracy estimate assumes the old mix); if not, check "
            "the inputs"
        )
    if name in ("confidence", "entropy"):
        mine = getattr(window, name)
        theirs = getattr(reference, name)
        if name == "confidence":
            how = _direction(mine, theirs, "less confident", "more confident")
        else:
            how = _direction(mine, theirs, "less uncertain", "more uncertain")
        return (
            f"the model is {how} than on the reference: median {name} {_number(np.median(mine))} "
            f"vs {_number(np.median(theirs))}; the inputs may be unlike its training data: "
            "check a sample of them by hand"
        )
    return (
        "the model's last hidden layer sees these inputs differently from the held-out data "
        "(MMD test); check a sample by hand, and if this is the new normal, retrain on data "
        "like it"
    )


def _direction(mine: np.ndarray, theirs: np.ndarray, lower: str, higher: str) -> str:
    a, b = float(np.median(mine)), float(np.median(theirs))
    if a == b:
        a, b = float(np.mean(mine)), float(np.mean(theirs))
    return lower if a < b else higher


def _number(value: float) -> str:
    value = float(value)
    if value == int(value) and abs(value) >= 1:
        return f"{int(value)}"
    return f"{value:.3g}"
