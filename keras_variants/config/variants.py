"""The variants and their data sets: what a lecture model is, as plain typed data.

To add a variant: one :class:`VariantConfig` entry in :data:`VARIANTS` here and, for a new
architecture, one builder in :mod:`keras_variants.model.builders`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt

DatasetName = Literal["mnist", "imdb"]
# How stored examples become model inputs and targets (see keras_variants.data.preprocessing).
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
