"""Typed configuration: the pipeline's parameters, the variants and the named profiles.

Everything here is plain data. Nothing is read from the environment at import time; the CLI
builds a :class:`PipelineConfig` from its options and passes it to the flow.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeInt,
    PositiveInt,
    ValidationInfo,
    field_validator,
    model_validator,
)

if TYPE_CHECKING:
    from keras_variants.study import Trial

DatasetName = Literal["mnist", "imdb"]
# How stored examples become model inputs and targets (see keras_variants.preprocessing).
InputEncoding = Literal["pixels_flat", "pixels_image", "multi_hot"]
LabelEncoding = Literal["one_hot", "binary"]
# IMDb vocabulary: the most frequent words kept, and so the width of the multi-hot input.
NUM_WORDS = 10_000
# Rows scored per compiled call, by evaluation, the served model and the gate alike: the
# same batches give the same numbers (bfloat16 kernels may round differently per batch).
# 256: an IMDb batch is then 10 MB of multi-hot floats; 1,024 cost a lane ~200 MB more.
SCORING_BATCH_ROWS = 256
# Keras's per-epoch history keys -> the metric keys of every curve in MLflow.
HISTORY_KEYS = {
    "loss": "train/loss",
    "accuracy": "train/accuracy",
    "val_loss": "val/loss",
    "val_accuracy": "val/accuracy",
}


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DatasetSpec(_Frozen):
    """What every variant of one data set shares: task head, loss and label encoding."""

    name: DatasetName
    output_units: int
    output_activation: str
    loss: str
    label_encoding: LabelEncoding
    num_classes: int
    # MNIST rows are in random order, so the last rows are held out (as in the lecture); the
    # IMDb file is sorted by label, so its rows are shuffled and the first ones held out.
    validation_holdout: Literal["last", "first_after_shuffle"]


class VariantConfig(_Frozen):
    """One lecture model: the builder to use, its layer sizes and its training settings."""

    name: str
    dataset: DatasetName
    architecture: Literal["dense", "cnn"]
    input_shape: tuple[int, ...]
    input_encoding: InputEncoding
    hidden_units: tuple[PositiveInt, ...]
    conv_filters: tuple[PositiveInt, ...] = ()
    l2: float = Field(0.0, ge=0.0)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    optimizer: Literal["rmsprop", "adam", "sgd"] = "rmsprop"
    learning_rate: float = Field(0.001, gt=0.0)
    epochs: PositiveInt
    batch_size: PositiveInt
    mc_samples: PositiveInt = Field(
        30,
        description="stochastic passes of Monte Carlo dropout at evaluation (variants with "
        "dropout only); per variant, so a sweep can vary it like any other setting",
    )


class Profile(_Frozen):
    """How much data and how many epochs a run uses (the lecture's, or a small slice)."""

    name: str
    description: str
    train_rows: int | None = Field(None, description="cap on training rows, validation included")
    test_rows: int | None = Field(None, description="cap on test rows")
    validation_rows: int = Field(10_000, description="training rows held out for validation")
    max_epochs: int | None = Field(None, description="cap on every variant's epochs")

    def epochs_for(self, variant: VariantConfig) -> int:
        return min(variant.epochs, self.max_epochs or variant.epochs)


DATASETS: dict[str, DatasetSpec] = {
    "mnist": DatasetSpec(
        name="mnist",
        output_units=10,
        output_activation="softmax",
        loss="categorical_crossentropy",
        label_encoding="one_hot",
        num_classes=10,
        validation_holdout="last",
    ),
    "imdb": DatasetSpec(
        name="imdb",
        output_units=1,
        output_activation="sigmoid",
        loss="binary_crossentropy",
        label_encoding="binary",
        num_classes=2,
        validation_holdout="first_after_shuffle",
    ),
}

_MNIST = {"dataset": "mnist", "epochs": 5}
_IMDB = {
    "dataset": "imdb",
    "architecture": "dense",
    "input_shape": (NUM_WORDS,),
    "input_encoding": "multi_hot",
    "epochs": 20,
    "batch_size": 512,
}

# The lecture's six models, plus opt-in ones (not run unless named with --variants). A new
# variant is one entry here (plus a builder if it needs one).
_MNIST_CNN = {
    "architecture": "cnn",
    "input_shape": (28, 28, 1),
    "input_encoding": "pixels_image",
    "conv_filters": (32, 64, 64),
    "hidden_units": (64,),
    "batch_size": 64,
    **_MNIST,
}

VARIANTS: dict[str, VariantConfig] = {
    v.name: v
    for v in [
        VariantConfig(
            name="mnist_dense",
            architecture="dense",
            input_shape=(784,),
            input_encoding="pixels_flat",
            hidden_units=(512,),
            batch_size=128,
            **_MNIST,
        ),
        VariantConfig(name="mnist_cnn", **_MNIST_CNN),
        VariantConfig(name="imdb_dense", hidden_units=(16, 16), **_IMDB),
        VariantConfig(name="imdb_reduced", hidden_units=(4, 4), **_IMDB),
        VariantConfig(name="imdb_l2", hidden_units=(16, 16), l2=0.001, **_IMDB),
        VariantConfig(name="imdb_dropout", hidden_units=(16, 16), dropout=0.5, **_IMDB),
        # Opt-in: the CNN with Dropout(0.5) after Flatten and after Dense(64), for Gal &
        # Ghahramani's rotated-digit figure with Monte Carlo dropout.
        VariantConfig(name="mnist_cnn_dropout", dropout=0.5, **_MNIST_CNN),
    ]
}
# What a run trains when no variants are named: the lecture's six.
DEFAULT_VARIANTS: tuple[str, ...] = (
    "mnist_dense",
    "mnist_cnn",
    "imdb_dense",
    "imdb_reduced",
    "imdb_l2",
    "imdb_dropout",
)

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


class PipelineConfig(_Frozen):
    """Everything one pipeline run needs; the flow's single parameter."""

    profile: Profile = PROFILES["full"]
    data_dir: Path | None = None
    tracking_uri: str
    artifact_root: Path
    reports_dir: Path
    seeds: tuple[NonNegativeInt, ...] = Field((0,), min_length=1, description="one run each")
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

    def trials(self) -> list[Trial]:
        """Every selected variant x sweep point x seed: one training run each."""
        from keras_variants.study import trials

        return trials(self.variants, self.seeds, self.sweeps)

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
