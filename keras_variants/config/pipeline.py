"""Typed configuration of a run: the pipeline's parameters, the named profiles and studies.

Everything here is plain data. Nothing is read from the environment at import time; the CLI
builds a :class:`PipelineConfig` from its options and passes it to the flow.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    Field,
    NonNegativeInt,
    ValidationInfo,
    field_validator,
    model_validator,
)

from keras_variants.config.trials import Trial, trials
from keras_variants.config.variants import (
    DATASETS,
    DEFAULT_VARIANTS,
    VARIANTS,
    VariantConfig,
    _Frozen,
)


class Profile(_Frozen):
    """How much data and how many epochs a run uses (the lecture's, or a small slice)."""

    name: str
    description: str
    train_rows: int | None = Field(None, description="cap on training rows, validation included")
    test_rows: int | None = Field(None, description="cap on test rows")
    validation_rows: int = Field(10_000, description="training rows held out for validation")
    max_epochs: int | None = Field(None, description="cap on every variant's epochs")
    validation: Literal["held_out", "test"] = Field(
        "held_out",
        description="held_out: validation_rows of the training data; test: the test rows "
        "(every training row trains), as the book's notebooks do; set by the protocol",
    )

    def epochs_for(self, variant: VariantConfig) -> int:
        return min(variant.epochs, self.max_epochs or variant.epochs)


PROFILES: dict[str, Profile] = {
    "full": Profile(
        name="full",
        description="the lecture's settings on the full data",
    ),
    "smoke": Profile(
        name="smoke",
        description="the same code on small slices and two epochs, for tests and quick checks",
        train_rows=1_000,
        test_rows=500,
        validation_rows=200,
        max_epochs=2,
    ),
}


class Study(_Frozen):
    """A named set of runs: variants, seeds and sweeps, run as one command."""

    name: str
    description: str
    seeds: tuple[int, ...]
    variants: tuple[str, ...] = DEFAULT_VARIANTS
    sweeps: dict[str, dict[str, tuple[Any, ...]]] = Field(default_factory=dict)


STUDIES: dict[str, Study] = {
    "lecture": Study(
        name="lecture",
        description="the lecture's six models on 5 seeds, dropout 0.2 beside the lecture's 0.5: "
        "enough to decide its claims",
        seeds=(0, 1, 2, 3, 4),
        sweeps={"imdb_dropout": {"dropout": (0.2, 0.5)}},
    ),
}


# How each protocol validates (the book's, as its notebook 4.4: "we will be using the IMDB
# test set as our validation set"); keras_variants/studies/sources.toml says the same.
PROTOCOLS: dict[str, Literal["held_out", "test"]] = {"lecture": "held_out", "book": "test"}


MAX_SEEDS = 100  # the most seeds --seeds auto:N may add up to


class SeedPlan(_Frozen):
    """``--seeds auto``: seeds 0 to ``first``-1, then twice as many at each later look
    (``first`` more, then 2 ``first`` more, ...), for the variants of the lecture claims
    still undecided, until all are decided or ``cap`` seeds."""

    first: int = Field(5, ge=3, description="seeds of the first look")
    cap: int = Field(40, ge=4, le=MAX_SEEDS, description="seeds at the last look")

    @model_validator(mode="after")
    def _cap_after_first(self) -> SeedPlan:
        if self.cap <= self.first:
            raise ValueError(f"auto: the cap ({self.cap}) must exceed the first {self.first} seeds")
        return self

    def params(self) -> dict[str, str]:
        """As the parent runs' params, from which a report rebuilds the looks."""
        return {
            "seeds.rule": "auto",
            "seeds.first": str(self.first),
            "seeds.cap": str(self.cap),
        }


class PipelineConfig(_Frozen):
    """Everything one pipeline run needs; the flow's single parameter."""

    profile: Profile = PROFILES["full"]
    data_dir: Path | None = None
    tracking_uri: str
    artifact_root: Path
    reports_dir: Path
    seeds: tuple[NonNegativeInt, ...] = Field((0,), min_length=1, description="one run each")
    seed_plan: SeedPlan | None = Field(
        None, description="add seeds until the lecture's claims are decided (--seeds auto)"
    )
    protocol: Literal["lecture", "book"] = Field(
        "lecture",
        description="lecture: validation rows held out of the training data; book: the test "
        "rows validate, as the book's notebooks do",
    )
    variants: tuple[str, ...] = DEFAULT_VARIANTS
    sweeps: dict[str, dict[str, tuple[Any, ...]]] = Field(
        default_factory=dict, description="variant -> field -> values, every combination run"
    )
    max_parallel: int = Field(2, ge=1, description="variants trained at the same time")
    runner: Literal["processes", "threads", "dask"] = Field(
        "processes",
        description="where training runs: lean lane processes started by the run, threads "
        "of this process, or a Dask cluster",
    )
    dask_address: str | None = Field(
        None, description="scheduler address (tcp://HOST:PORT); none: a local cluster"
    )
    steps_per_execution: int = Field(
        32, ge=1, description="training batches per compiled Keras call (speed only)"
    )
    promotion_margin: float = Field(
        0.0, ge=0.0, description="test accuracy a challenger must gain over the champion"
    )
    promotion_significance: float = Field(
        0.05,
        ge=0.0,
        le=1.0,
        description="largest McNemar p-value at which a challenger counts as better than the "
        "champion on the same test inputs; 1: no test, any gain beyond the margin",
    )
    promote: bool = Field(True, description="register and gate the best variant per data set")
    force: bool = Field(False, description="retrain trials that an earlier run already trained")
    precision: Literal["auto", "float32", "mixed_bfloat16"] = Field(
        "auto",
        description="auto: mixed_bfloat16 for convolutional variants where the CPU computes "
        "bfloat16 natively, float32 elsewhere",
    )

    @model_validator(mode="before")
    @classmethod
    def _one_seed(cls, values: Any) -> Any:
        """``seed=N`` is short for ``seeds=(N,)``."""
        if isinstance(values, dict) and "seed" in values:
            values = dict(values)
            values["seeds"] = (values.pop("seed"),)
        return values

    @model_validator(mode="before")
    @classmethod
    def _protocol_validates(cls, values: Any) -> Any:
        """The profile validates as the protocol says (:data:`PROTOCOLS`)."""
        if not isinstance(values, dict) or values.get("protocol", "lecture") not in PROTOCOLS:
            return values
        values = dict(values)
        profile = values.get("profile", PROFILES["full"])
        if isinstance(profile, dict):
            profile = Profile.model_validate(profile)
        update = {"validation": PROTOCOLS[values.get("protocol", "lecture")]}
        values["profile"] = profile.model_copy(update=update)
        return values

    @model_validator(mode="after")
    def _plan_starts_at_zero(self) -> PipelineConfig:
        if self.seed_plan is not None and self.seeds != tuple(range(self.seed_plan.first)):
            raise ValueError(f"auto starts from seeds 0-{self.seed_plan.first - 1}")
        return self

    @field_validator("variants")
    @classmethod
    def _known_variants(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [n for n in names if n not in VARIANTS]
        if unknown or not names:
            raise ValueError(f"unknown variant(s) {unknown}; choose from {', '.join(VARIANTS)}")
        return names

    @field_validator("sweeps")
    @classmethod
    def _sweeps_of_selected_variants(cls, sweeps: dict, info: ValidationInfo) -> dict:
        unselected = sorted(set(sweeps) - set(info.data.get("variants", ())))
        if unselected:
            raise ValueError(
                f"{', '.join(unselected)} is swept but not selected; add it to --variants"
            )
        return sweeps

    @property
    def seed(self) -> int:
        """The first seed: it fixes the test rows the gate scores on."""
        return self.seeds[0]

    def selected(self) -> list[VariantConfig]:
        return [VARIANTS[name] for name in self.variants]

    def trials(self, seeds: Sequence[int] | None = None) -> list[Trial]:
        """Every selected variant x sweep point x seed (``seeds``, default the config's):
        one training run each."""
        return trials(self.variants, self.seeds if seeds is None else seeds, self.sweeps)

    def datasets(self) -> list[str]:
        """The data sets the selected variants need, in a stable order."""
        return [d for d in DATASETS if any(v.dataset == d for v in self.selected())]


def build_config(
    *,
    profile: str = "full",
    data_dir: Path | None = None,
    tracking_uri: str | None = None,
    workdir: Path | None = None,
    **overrides: object,
) -> PipelineConfig:
    """A config from a profile name, with stores defaulting to absolute paths under ``workdir``."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose from {', '.join(PROFILES)}")
    root = Path(workdir or Path.cwd()).resolve()
    return PipelineConfig(
        profile=PROFILES[profile],
        data_dir=Path(data_dir).expanduser().resolve() if data_dir else None,
        tracking_uri=tracking_uri or f"sqlite:///{root / 'mlflow.db'}",
        artifact_root=root / "mlruns",
        reports_dir=root / "reports",
        **overrides,
    )
