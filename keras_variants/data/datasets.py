"""Ingestion: read MNIST and IMDb from a folder in the Keras file layout.

Pure functions over files: no tracking, no orchestration. Arrays stay compact (uint8 images,
ragged word ids); :mod:`keras_variants.data.preprocessing` turns them into model inputs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from keras_variants.config.pipeline import Profile
from keras_variants.config.variants import DATASETS, NUM_WORDS
from keras_variants.data.npz import read_npz, sha256_of
from keras_variants.data.preprocessing import keras_word_ids
from keras_variants.data.ragged import Ragged, take_rows
from keras_variants.errors import DataError

MNIST_FILE = "mnist.npz"
IMDB_FILE = "imdb.npz"
IMDB_WORD_INDEX_FILE = "imdb_word_index.json"
IMDB_REVIEWS_FILE = "imdb_reviews.parquet"  # raw texts, row for row (optional)
SPLIT_KEYS = ("x_train", "y_train", "x_test", "y_test")
KERAS_ORIGIN = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
KERAS_IMDB_VOCABULARY = 88584  # size of Keras's own imdb_word_index.json


@dataclass(frozen=True)
class Examples:
    """Inputs and labels of one split, in their compact stored form."""

    inputs: np.ndarray | Ragged
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, rows: np.ndarray) -> Examples:
        """The examples at ``rows``; a view, not a copy, when they are consecutive."""
        if len(rows) and rows[-1] - rows[0] == len(rows) - 1 and np.all(np.diff(rows) == 1):
            rows = slice(int(rows[0]), int(rows[-1]) + 1)
        return Examples(take_rows(self.inputs, rows), self.labels[rows])


@dataclass(frozen=True)
class Dataset:
    """One data set as read from disk: its train/test splits and the files they came from."""

    name: str
    train: Examples
    test: Examples
    fingerprints: dict[str, str] = field(default_factory=dict)  # file name -> SHA-256
    files: dict[str, str] = field(default_factory=dict)  # file name -> absolute path
    raw_stats: dict[str, dict[str, np.ndarray]] = field(default_factory=dict, repr=False)
    vocabulary_size: int | None = None
    folder: str | None = None  # the .npy files its arrays are mapped from (data.cache), if any


@dataclass(frozen=True)
class Splits:
    """The rows a variant trains on, selects epochs with, and is finally scored on."""

    train: Examples
    validation: Examples
    test: Examples
    test_rows: np.ndarray  # the test rows' positions in the file's test split


def split_rows(dataset: Dataset, profile: Profile, seed: int) -> dict[str, np.ndarray]:
    """Row positions of the train, validation and test splits, the profile's row caps
    applied: validation rows held out from the file's train split, or, when the profile
    validates on the test rows (the book's protocol), the test rows themselves."""
    rng = np.random.default_rng(seed)
    holdout = DATASETS[dataset.name].validation_holdout
    rows = np.arange(len(dataset.train))
    if holdout == "first_after_shuffle":
        rows = rng.permutation(rows)
    if profile.train_rows is not None:
        rows = rows[: profile.train_rows]
    n_validation = min(profile.validation_rows, len(rows) // 2)
    if profile.validation == "test":
        train_rows, validation_rows = rows, None
    elif holdout == "last":
        train_rows, validation_rows = rows[:-n_validation], rows[-n_validation:]
    else:
        validation_rows, train_rows = rows[:n_validation], rows[n_validation:]
    test_rows = np.arange(len(dataset.test))
    if profile.test_rows is not None and profile.test_rows < len(test_rows):
        # A random subset, since a test split may be sorted by label.
        test_rows = np.sort(rng.choice(test_rows, profile.test_rows, replace=False))
    if validation_rows is None:  # positions in the test split, not the train split
        validation_rows = test_rows
    return {"train": train_rows, "validation": validation_rows, "test": test_rows}


def make_splits(dataset: Dataset, profile: Profile, seed: int) -> Splits:
    """The examples at :func:`split_rows`."""
    rows = split_rows(dataset, profile, seed)
    validating = dataset.test if profile.validation == "test" else dataset.train
    return Splits(
        train=dataset.train.take(rows["train"]),
        validation=validating.take(rows["validation"]),
        test=dataset.test.take(rows["test"]),
        test_rows=rows["test"],
    )


def resolve_data_file(data_dir: Path | None, name: str) -> Path:
    """``data_dir / name``; without a folder, the file from Keras's download cache."""
    if data_dir is not None:
        return Path(data_dir).expanduser().resolve() / name
    import keras  # only needed for the download fallback

    try:
        return Path(keras.utils.get_file(name, origin=KERAS_ORIGIN + name))
    except Exception as exc:
        raise DataError(
            name,
            None,
            f"download from Keras's dataset store failed ({type(exc).__name__}: {exc})",
            "Without internet, pass --data-dir DIR or set VARIANTS_DATA_DIR to a folder "
            f"holding {MNIST_FILE} and {IMDB_FILE} in the Keras layout.",
        ) from exc


def load_mnist(path: Path) -> Dataset:
    """Read ``mnist.npz``: uint8 images (N, 28, 28) and digit labels (N,)."""
    npz = read_npz(path, SPLIT_KEYS)
    arrays = npz.arrays
    for key in SPLIT_KEYS:
        _require_numeric(arrays[key], path.name, key)
    return Dataset(
        name="mnist",
        train=Examples(arrays["x_train"], arrays["y_train"]),
        test=Examples(arrays["x_test"], arrays["y_test"]),
        fingerprints={path.name: npz.sha256},
        files={path.name: str(path.resolve())},
    )


def load_imdb(path: Path, num_words: int = NUM_WORDS, word_index: Path | None = None) -> Dataset:
    """Read ``imdb.npz`` and apply Keras's ``load_data(num_words=...)`` rules.

    Stored sequences hold word ranks (1 = most frequent). As in Keras, ranks are shifted by
    ``index_from=3``, each review starts with ``start_char=1`` and ids past ``num_words``
    become ``oov_char=2``. ``raw_stats`` keeps per-review facts about the raw ranks for
    validation.
    """
    npz = read_npz(path, SPLIT_KEYS)
    fingerprints = {path.name: npz.sha256}
    files = {path.name: str(path.resolve())}
    vocabulary_size = KERAS_IMDB_VOCABULARY
    if word_index is not None and word_index.is_file():
        raw = word_index.read_bytes()
        try:
            vocabulary_size = len(json.loads(raw))
        except (json.JSONDecodeError, TypeError) as exc:
            raise DataError(word_index.name, None, f"not a JSON word index: {exc}") from exc
        fingerprints[word_index.name] = sha256_of(raw)
        files[word_index.name] = str(word_index.resolve())
    splits, raw_stats = {}, {}
    for split in ("train", "test"):
        labels = npz.array(f"y_{split}")
        _require_numeric(labels, path.name, f"y_{split}")
        # One split's Python lists at a time: they take ~20x the memory of the ragged form.
        ranks = _ragged_from_object_array(npz.array(f"x_{split}"), path.name, f"x_{split}")
        raw_stats[split] = _sequence_stats(ranks)
        splits[split] = Examples(keras_word_ids(ranks, num_words), labels)
    return Dataset(
        name="imdb",
        train=splits["train"],
        test=splits["test"],
        fingerprints=fingerprints,
        files=files,
        raw_stats=raw_stats,
        vocabulary_size=vocabulary_size,
    )


def _require_numeric(array: np.ndarray, file: str, key: str) -> None:
    if array.ndim == 0:
        raise DataError(file, key, "expected an array of rows, found a single value")
    if array.dtype.kind not in "biuf":
        raise DataError(file, key, f"expected a numeric array, found dtype {array.dtype}")


def _ragged_from_object_array(array: np.ndarray, file: str, key: str) -> Ragged:
    """Flatten an object array of integer lists; values stay float64 so NaN can be reported."""
    if array.ndim != 1:
        raise DataError(file, key, f"expected a 1-D array of sequences, found shape {array.shape}")
    try:
        lengths = np.fromiter(map(len, array), dtype=np.int64, count=len(array))
        values = np.fromiter(
            (v for row in array for v in row), dtype=np.float64, count=int(lengths.sum())
        )
    except (TypeError, ValueError) as exc:
        row = next((i for i, r in enumerate(array) if not _is_number_list(r)), "?")
        raise DataError(
            file, key, f"row {row} is not a list of word ranks ({exc})", "Re-create the file."
        ) from exc
    return Ragged(values, np.concatenate([[0], np.cumsum(lengths)]))


def _is_number_list(row: object) -> bool:
    try:
        return all(isinstance(float(v), float) for v in row)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        return False


def _sequence_stats(ranks: Ragged) -> dict[str, np.ndarray]:
    """Per-review length, smallest and largest rank, non-integer count and common-word share."""
    lengths = ranks.lengths
    nonempty = lengths > 0
    starts = ranks.offsets[:-1][nonempty]
    values = ranks.values
    minimum = np.full(len(ranks), np.nan)
    maximum = np.full(len(ranks), np.nan)
    non_integer = np.zeros(len(ranks), dtype=np.int64)
    common_share = np.full(len(ranks), np.nan)
    if len(values):
        minimum[nonempty] = np.minimum.reduceat(values, starts)
        maximum[nonempty] = np.maximum.reduceat(values, starts)
        bad = ~np.isfinite(values) | (values != np.round(values))
        non_integer[nonempty] = np.add.reduceat(bad.astype(np.int64), starts)
        common = ((values >= 1) & (values <= 100)).astype(np.float64)
        common_share[nonempty] = np.add.reduceat(common, starts) / lengths[nonempty]
    return {
        "length": lengths,
        "min_rank": minimum,
        "max_rank": maximum,
        "non_integer_values": non_integer,
        "top100_word_share": common_share,
    }


def dataset_files(name: str, data_dir: Path) -> list[Path]:
    """The files in ``data_dir`` that :func:`load_dataset` reads for ``name``."""
    names = [MNIST_FILE] if name == "mnist" else [IMDB_FILE, IMDB_WORD_INDEX_FILE]
    return [Path(data_dir) / n for n in names if (Path(data_dir) / n).is_file()]


def load_dataset(name: str, data_dir: Path | None, num_words: int = NUM_WORDS) -> Dataset:
    """Load ``mnist`` or ``imdb`` from ``data_dir`` (or Keras's download when it is None)."""
    if name == "mnist":
        return load_mnist(resolve_data_file(data_dir, MNIST_FILE))
    word_index = Path(data_dir).expanduser().resolve() / IMDB_WORD_INDEX_FILE if data_dir else None
    return load_imdb(resolve_data_file(data_dir, IMDB_FILE), num_words, word_index)


def summarize(data: Dataset) -> dict[str, object]:
    """Rows, classes and fingerprints, for the user and for run metadata."""
    return {
        "dataset": data.name,
        "train_rows": len(data.train),
        "test_rows": len(data.test),
        "classes": sorted(int(c) for c in np.unique(data.train.labels)),
        "fingerprints": dict(data.fingerprints),
    }
