"""Summary tables that the expectation suites check: pure functions of the loaded data."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from keras_variants.config.variants import DATASETS, VARIANTS
from keras_variants.data.datasets import IMDB_FILE, MNIST_FILE, Dataset, Examples
from keras_variants.data.preprocessing import encode_inputs, encode_labels
from keras_variants.data.ragged import Ragged
from keras_variants.lanes.call import Call, call_here

ENCODED_SAMPLE_ROWS = 512
IMAGE_CHUNK_ROWS = 5_000


@dataclass(frozen=True)
class CheckTable:
    """One table to validate, with the file and the array fields its columns come from."""

    file: str
    name: str  # e.g. "train images"; also the suite's key
    suite: str
    frame: pd.DataFrame
    fields: dict[str, str] = field(default_factory=dict)  # column -> array field in the file


def _dtype_kind(array: np.ndarray) -> str:
    return {"u": "integer", "i": "integer", "f": "float", "b": "bool"}.get(
        array.dtype.kind, str(array.dtype)
    )


def mnist_tables(data: Dataset) -> list[CheckTable]:
    """Split sizes and shapes, per-image pixel facts and per-class shares, for each split."""
    splits = {"train": data.train, "test": data.test}
    split_rows = pd.DataFrame(
        [
            {
                "split": name,
                "x_rows": len(ex.inputs),
                "y_rows": len(ex.labels),
                "image_shape": "x".join(map(str, ex.inputs.shape[1:])),
                "x_dtype": str(ex.inputs.dtype),
                "y_dtype": _dtype_kind(ex.labels),
            }
            for name, ex in splits.items()
        ]
    )
    tables = [
        CheckTable(
            MNIST_FILE,
            "splits",
            "mnist_splits",
            split_rows,
            {"x_rows": "x_*", "y_rows": "y_*", "image_shape": "x_*", "x_dtype": "x_*"},
        )
    ]
    for name, ex in splits.items():
        tables += [_mnist_images(name, ex), _class_shares(MNIST_FILE, name, ex.labels, 10)]
    return tables


def _mnist_images(split: str, ex: Examples) -> CheckTable:
    rows = min(len(ex.inputs), len(ex.labels))
    width = int(np.prod(ex.inputs.shape[1:]))
    pixels = np.asarray(ex.inputs[:rows]).reshape(rows, width)
    stats = {k: np.zeros(rows) for k in ("pixel_min", "pixel_max", "sum", "blank")}
    non_finite = np.zeros(rows, dtype=np.int64)
    for start in range(0, rows, IMAGE_CHUNK_ROWS):  # chunks: no float copy of all images
        chunk = pixels[start : start + IMAGE_CHUNK_ROWS].astype(np.float64)
        finite = np.isfinite(chunk)
        chunk = np.where(finite, chunk, 0.0)
        part = slice(start, start + len(chunk))
        non_finite[part] = (~finite).sum(axis=1)
        stats["pixel_min"][part] = chunk.min(axis=1, initial=0.0)
        stats["pixel_max"][part] = chunk.max(axis=1, initial=0.0)
        stats["sum"][part] = chunk.sum(axis=1)
        stats["blank"][part] = (chunk == 0).sum(axis=1)
    frame = pd.DataFrame(
        {
            "label": ex.labels[:rows],
            "pixel_min": stats["pixel_min"],
            "pixel_max": stats["pixel_max"],
            "non_finite_pixels": non_finite,
            "mean_intensity": stats["sum"] / max(width, 1),
            "blank_share": stats["blank"] / max(width, 1),
        }
    )
    x, y = f"x_{split}", f"y_{split}"
    fields = {c: x for c in frame.columns} | {"label": y}
    return CheckTable(MNIST_FILE, f"{split} images", "mnist_images", frame, fields)


def _class_shares(file: str, split: str, labels: np.ndarray, classes: int) -> CheckTable:
    valid = labels[(labels >= 0) & (labels < classes)].astype(np.int64)
    counts = np.bincount(valid, minlength=classes)[:classes]
    frame = pd.DataFrame({"label": np.arange(classes), "share": counts / max(len(labels), 1)})
    suite = "mnist_classes" if classes == 10 else "imdb_classes"
    return CheckTable(file, f"{split} classes", suite, frame, {"share": f"y_{split}"})


def imdb_tables(data: Dataset) -> list[CheckTable]:
    """Split sizes, then per-review length, rank range and label, for each split."""
    splits = {"train": data.train, "test": data.test}
    split_rows = pd.DataFrame(
        [
            {
                "split": name,
                "x_rows": len(ex.inputs),
                "y_rows": len(ex.labels),
                "y_dtype": _dtype_kind(ex.labels),
            }
            for name, ex in splits.items()
        ]
    )
    tables = [
        CheckTable(
            IMDB_FILE, "splits", "imdb_splits", split_rows, {"x_rows": "x_*", "y_rows": "y_*"}
        )
    ]
    for name, ex in splits.items():
        stats = data.raw_stats[name]
        rows = min(len(ex.inputs), len(ex.labels))
        frame = pd.DataFrame({"label": ex.labels[:rows]} | {k: v[:rows] for k, v in stats.items()})
        fields = {c: f"x_{name}" for c in stats} | {"label": f"y_{name}"}
        tables += [
            CheckTable(IMDB_FILE, f"{name} reviews", "imdb_reviews", frame, fields),
            _class_shares(IMDB_FILE, name, ex.labels, 2),
        ]
    return tables


def encoded_tables(data: Dataset, call: Call = call_here) -> list[CheckTable]:
    """Facts about the first rows of each split after the lecture's preprocessing
    (:func:`encoded_columns`, through ``call``)."""
    file = MNIST_FILE if data.name == "mnist" else IMDB_FILE
    tables = []
    for split, ex in {"train": data.train, "test": data.test}.items():
        sample = ex.take(np.arange(min(len(ex), ENCODED_SAMPLE_ROWS)))
        frame = pd.DataFrame(call(encoded_columns, data.name, sample))
        fields = {c: f"x_{split}" for c in frame.columns} | {"label_sum": f"y_{split}"}
        tables.append(CheckTable(file, f"{split} encoded", f"{data.name}_encoded", frame, fields))
    return tables


def encoded_columns(dataset: str, sample: Examples) -> dict[str, np.ndarray]:
    """Per row of ``sample``: smallest and largest value and width of every variant's input
    encoding, the label encoding's sum and (word ids) the largest id."""
    columns: dict[str, np.ndarray] = {}
    for variant in (v for v in VARIANTS.values() if v.dataset == dataset):
        inputs = encode_inputs(sample.inputs, variant)
        flat = inputs.reshape(len(inputs), -1)
        columns[f"{variant.input_encoding}_min"] = flat.min(axis=1, initial=np.inf)
        columns[f"{variant.input_encoding}_max"] = flat.max(axis=1, initial=-np.inf)
        columns[f"{variant.input_encoding}_width"] = np.full(len(flat), flat.shape[1])
    labels = encode_labels(sample.labels, DATASETS[dataset])
    columns["label_sum"] = labels.reshape(len(labels), -1).sum(axis=1)
    if isinstance(sample.inputs, Ragged):
        columns["max_word_id"] = _row_max(sample.inputs)
    return columns


def _row_max(sequences: Ragged) -> np.ndarray:
    out = np.full(len(sequences), -1, dtype=np.int64)
    nonempty = sequences.lengths > 0
    if nonempty.any():
        out[nonempty] = np.maximum.reduceat(sequences.values, sequences.offsets[:-1][nonempty])
    return out
