"""Trials: one training run each, a variant at one sweep point with one seed.

Every run is a list of trials (one seed and no sweep is a list of one per variant); a
study is many. Plain data, no I/O.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from keras_variants.config.variants import VARIANTS, VariantConfig

Sweeps = dict[str, dict[str, tuple[object, ...]]]  # variant -> field -> values


def apply(variant: VariantConfig, settings: Mapping[str, object]) -> VariantConfig:
    """``variant`` with ``settings`` changed, validated like any variant config."""
    return VariantConfig.model_validate(variant.model_dump() | dict(settings))


@dataclass(frozen=True)
class Trial:
    """One training run of a study: a variant at one sweep point, with one seed."""

    variant: VariantConfig
    seed: int
    point: dict[str, object] = field(default_factory=dict)  # swept fields' values

    @property
    def label(self) -> str:
        """The variant, plus the swept values that differ from the lecture's."""
        return point_label(self.variant.name, self.point)

    @property
    def run_name(self) -> str:
        return f"{self.label} seed {self.seed}"


def point_label(name: str, point: Mapping[str, object]) -> str:
    lecture = VARIANTS[name]
    changed = [(k, v) for k, v in point.items() if getattr(lecture, k) != v]
    return " ".join([name, *(f"{k}:{_value(v)}" for k, v in changed)])


def _value(value: object) -> str:
    return "x".join(map(str, value)) if isinstance(value, tuple) else str(value)


def trials(variants: Sequence[str], seeds: Sequence[int], sweeps: Sweeps) -> list[Trial]:
    """Every variant x sweep point x seed, seeds innermost."""
    out = []
    for name in variants:
        grid = sweeps.get(name, {})
        for values in itertools.product(*grid.values()):
            point = dict(zip(grid, values, strict=True))
            variant = apply(VARIANTS[name], point)
            out += [Trial(variant, seed, point) for seed in seeds]
    return out


def longest_first(trials: Sequence[Trial]) -> list[Trial]:
    """``trials`` in the order to start them: convolutional variants first (one takes
    several times as long as any dense one here), so that no lane is left with a long
    trial at the end while the others idle; otherwise as given."""
    return sorted(trials, key=lambda trial: trial.variant.architecture != "cnn")
