"""A data set's compact arrays as ``.npy`` files that processes memory-map instead of
receiving copies: what the lanes share (:func:`map_dataset`, :func:`open_mapped`) and the
read cache keeps (:func:`save_splits`, :func:`mapped_splits`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from keras_variants.data.datasets import Dataset, Examples
from keras_variants.data.ragged import Ragged


@dataclass(frozen=True)
class MappedDataset:
    """A data set's compact arrays saved as ``.npy`` files in ``folder``, for processes
    that memory-map them (:func:`open_mapped`) instead of receiving copies."""

    name: str
    folder: str
    fingerprints: dict[str, str]
    files: dict[str, str]
    vocabulary_size: int | None


def map_dataset(data: Dataset, folder: Path) -> MappedDataset:
    """``data`` as processes map it: from its own folder if it has one (a cached read), else
    its splits saved into the new folder ``folder`` (raw statistics stay behind)."""
    if data.folder is None:
        folder.mkdir(parents=True)
        save_splits(data, folder)
    return MappedDataset(
        data.name,
        data.folder or str(folder),
        dict(data.fingerprints),
        dict(data.files),
        data.vocabulary_size,
    )


def save_splits(data: Dataset, folder: Path) -> None:
    """``data``'s splits as ``.npy`` files in ``folder``, as :func:`mapped_splits` reads them."""
    for split, examples in (("train", data.train), ("test", data.test)):
        arrays = {"labels": examples.labels}
        if isinstance(examples.inputs, Ragged):
            arrays |= {"values": examples.inputs.values, "offsets": examples.inputs.offsets}
        else:
            arrays["inputs"] = examples.inputs
        for key, array in arrays.items():
            np.save(folder / f"{split}_{key}.npy", np.ascontiguousarray(array))


def open_mapped(mapped: MappedDataset) -> Dataset:
    """The :class:`Dataset` saved by :func:`map_dataset`, its arrays memory-mapped. Mapped
    anew for each job: the pages stay in the page cache, but leave the process when the
    job's arrays go, so a lane that ran both data sets does not hold both."""
    train, test = mapped_splits(mapped.folder)
    return Dataset(
        name=mapped.name,
        train=train,
        test=test,
        fingerprints=dict(mapped.fingerprints),
        files=dict(mapped.files),
        vocabulary_size=mapped.vocabulary_size,
    )


def mapped_splits(folder: str) -> tuple[Examples, Examples]:
    """The train and test splits saved by :func:`save_splits`, memory-mapped."""

    def load(split: str) -> Examples:
        def array(key: str) -> np.ndarray:
            return np.load(Path(folder) / f"{split}_{key}.npy", mmap_mode="r")

        if (Path(folder) / f"{split}_values.npy").is_file():
            inputs: np.ndarray | Ragged = Ragged(array("values"), array("offsets"))
        else:
            inputs = array("inputs")
        return Examples(inputs, array("labels"))

    return load("train"), load("test")
