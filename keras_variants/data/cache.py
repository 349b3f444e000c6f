"""Data sets read once: a data set read from its files is kept as ``.npy`` files, keyed by
the files' SHA-256, the reading code and the options, and a later read of the same files
memory-maps them (no parsing; the run's lane processes then map the same files instead of
a copy written for them).

The entries live in ``VARIANTS_CACHE_DIR`` (default ``~/.cache/keras-variants/data``); each
is written whole into a temporary folder and renamed, so a reader never sees half of one.
Beyond the :data:`KEPT` most recently used, entries unused for :data:`UNUSED_S` are removed
(a run maps its entry for as long as it trains, so one in use is never removed).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from keras_variants.code_digest import code_digest
from keras_variants.data.datasets import Dataset, dataset_files, load_dataset
from keras_variants.data.mapped import mapped_splits, save_splits
from keras_variants.data.npz import sha256_of
from keras_variants.kept_folders import keep, prune

KEPT = 4  # data set versions always kept (one is ~50-120 MB)
UNUSED_S = 2 * 24 * 3600  # beyond those, an entry unused this long is removed
META = "dataset.json"


def cache_dir() -> Path:
    """Where read data sets are kept."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "keras-variants"
    return Path(os.environ.get("VARIANTS_CACHE_DIR", default / "data"))


def data_key(name: str, num_words: int, code: str, files: dict[str, str]) -> str:
    """SHA-256 of what a read depends on: the data set, the options, the reading code's
    digest and each file read (name -> SHA-256)."""
    digest = hashlib.sha256(f"{name}:{num_words}:{code}".encode())
    for file, sha256 in sorted(files.items()):
        digest.update(f"\0{file}:{sha256}".encode())
    return digest.hexdigest()


def _key_of(name: str, data_dir: Path, num_words: int) -> str:
    files = {p.name: sha256_of(p.read_bytes()) for p in dataset_files(name, Path(data_dir))}
    return data_key(name, num_words, code_digest("keras_variants.data.datasets"), files)


def read_dataset(
    name: str, data_dir: Path | None, num_words: int, folder: Path | None = None
) -> Dataset:
    """``name`` from ``data_dir``: mapped from the entry for these files in ``folder``
    (default :func:`cache_dir`) if there is one, else read from the files and kept there.
    Without a data folder (Keras's download) nothing is kept."""
    if data_dir is None:
        return load_dataset(name, data_dir, num_words)
    entry = (folder or cache_dir()) / _key_of(name, Path(data_dir), num_words)
    if (entry / META).is_file():
        entry.touch()  # recently used: kept longest
        return _mapped(entry, name, Path(data_dir))
    data = load_dataset(name, data_dir, num_words)
    _keep(data, entry)
    return data


def _keep(data: Dataset, entry: Path) -> None:
    def write(folder: Path) -> None:
        save_splits(data, folder)
        for split, stats in data.raw_stats.items():
            for key, array in stats.items():
                np.save(folder / f"raw_{split}_{key}.npy", np.ascontiguousarray(array))
        meta = {
            "fingerprints": data.fingerprints,
            "vocabulary_size": data.vocabulary_size,
            "raw_stats": {split: sorted(stats) for split, stats in data.raw_stats.items()},
        }
        (folder / META).write_text(json.dumps(meta))

    keep(entry, write)  # if it cannot be kept (no room), the next run reads the files again
    prune(entry.parent, KEPT, UNUSED_S)


def _mapped(entry: Path, name: str, data_dir: Path) -> Dataset:
    meta = json.loads((entry / META).read_text())
    train, test = mapped_splits(str(entry))
    raw_stats = {
        split: {k: np.load(entry / f"raw_{split}_{k}.npy", mmap_mode="r") for k in keys}
        for split, keys in meta["raw_stats"].items()
    }
    return Dataset(
        name=name,
        train=train,
        test=test,
        fingerprints=meta["fingerprints"],
        files={p.name: str(p.resolve()) for p in dataset_files(name, data_dir)},
        raw_stats=raw_stats,
        vocabulary_size=meta["vocabulary_size"],
        folder=str(entry),
    )
