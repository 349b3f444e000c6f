"""The TensorFlow work of a run, as functions from picklable specs to picklable results.

:mod:`keras_variants.lanes.pool` runs them in lean worker processes (or, for the threads and
Dask runners, where it is called), so the orchestrating process never holds a Keras model:
it sends a :class:`TrainJob`, hears every epoch through ``report``, and gets back a
:class:`TrainedVariant` whose served model is already saved in ``job.model_dir``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from keras_variants.config.pipeline import Profile
from keras_variants.config.variants import VariantConfig
from keras_variants.data.datasets import IMDB_WORD_INDEX_FILE, Dataset, make_splits
from keras_variants.data.mapped import MappedDataset, open_mapped

# epoch (1-based), epochs, Keras's logs, seconds: what a lane reports after every epoch
EpochReport = Callable[[int, int, dict[str, float], float], None]


@dataclass(frozen=True)
class TrainJob:
    """One trial to train, evaluate and save as a served model."""

    variant: VariantConfig
    seed: int
    profile: Profile
    data: Dataset | MappedDataset  # a lane's copy is memory-mapped from shared files
    input_example: str  # a test example as users send it, stored with the served model
    model_dir: str  # a new folder for the served model
    steps_per_execution: int = 1
    precision: str = "float32"

    @property
    def epochs(self) -> int:
        return self.profile.epochs_for(self.variant)


@dataclass(frozen=True)
class TrainedVariant:
    """What a trial gave: curves, test metrics and the folder of its served model."""

    history: dict[str, list[float]]  # "train/loss" -> one value per epoch
    test_metrics: dict[str, float]
    confusion_matrix: np.ndarray
    training_seconds: float
    validation_loss_min_epoch: int  # 1-based
    uncertainty: dict
    parameter_count: int
    rows: dict[str, int]  # split -> rows it had
    model_dir: str
    precision: str
    epochs: int


def train(job: TrainJob, report: EpochReport) -> TrainedVariant:
    """Train ``job``'s variant on its seed's splits, score it on test, save its served model."""
    from keras_variants.model.training import EpochProgress, StopOnRequest, train_and_evaluate
    from keras_variants.serving import saving

    data = open_mapped(job.data) if isinstance(job.data, MappedDataset) else job.data
    splits = make_splits(data, job.profile, job.seed)
    callbacks = [StopOnRequest(), EpochProgress(job.epochs, report)]
    result = train_and_evaluate(
        job.variant, splits, job.epochs, job.seed, callbacks, job.steps_per_execution,
        job.precision,
    )  # fmt: skip
    word_index = data.files.get(IMDB_WORD_INDEX_FILE)
    saving.save_model(
        Path(job.model_dir),
        job.variant,
        result.model,
        job.input_example,
        Path(word_index) if word_index else None,
        pip_requirements=saving.requirements(),
    )
    return TrainedVariant(
        history=result.history,
        test_metrics=result.test_metrics,
        confusion_matrix=result.confusion_matrix,
        training_seconds=result.training_seconds,
        validation_loss_min_epoch=result.validation_loss_min_epoch,
        uncertainty=result.uncertainty,
        parameter_count=result.parameter_count,
        rows={split: len(getattr(splits, split)) for split in ("train", "validation", "test")},
        model_dir=job.model_dir,
        precision=job.precision,
        epochs=job.epochs,
    )
