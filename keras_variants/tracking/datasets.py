"""Data files as a run's MLflow dataset inputs ("Datasets used"): a local file's source, a
dataset's entity (name, digest, source, profile) and the input that tags it with its
context (training, test, scoring). MLflow's public API only: its own callers build the
entity with a private method of its ``Dataset``, which reads the same fields from the
public ``Dataset.to_dict()`` as :func:`file_dataset` does (``tests/test_compat.py``
checks that the two agree).
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from mlflow.data.dataset_source_registry import resolve_dataset_source
from mlflow.data.meta_dataset import MetaDataset
from mlflow.entities import Dataset as DatasetEntity
from mlflow.entities import DatasetInput, InputTag
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

from keras_variants.data.datasets import Dataset


def file_dataset(
    path: str | Path, name: str, digest: str, profile: dict[str, Any] | None = None
) -> DatasetEntity:
    """The local file ``path`` as a dataset named ``name`` with ``digest`` (MLflow keeps at
    most 36 characters of it) and, if given, a ``profile`` (shown as JSON in the UI)."""
    with warnings.catch_warnings():  # a local path matches two equivalent source kinds
        warnings.simplefilter("ignore", UserWarning)
        source = resolve_dataset_source(str(path))
    fields = MetaDataset(source, name=name, digest=digest).to_dict()
    return DatasetEntity(
        name=fields["name"],
        digest=fields["digest"],
        source_type=fields["source_type"],
        source=fields["source"],
        schema=fields.get("schema"),
        profile=json.dumps(profile) if profile is not None else None,
    )


def dataset_input(dataset: DatasetEntity, context: str) -> DatasetInput:
    """``dataset`` as a run's input, used for ``context`` (``training``, ``test``, ...)."""
    return DatasetInput(dataset, tags=[InputTag(MLFLOW_DATASET_CONTEXT, context)])


def training_inputs(data: Dataset) -> list[DatasetInput]:
    """``data``'s files as a run's training inputs."""
    return [
        dataset_input(file_dataset(path, file, data.fingerprints[file][:32]), "training")
        for file, path in data.files.items()
    ]


def test_dataset(data: Dataset, test_rows: np.ndarray) -> DatasetEntity:
    """The test rows a trial was scored on, as an MLflow dataset: named after the data set,
    its digest covering the files' SHA-256 and the rows."""
    digest = hashlib.sha256(np.ascontiguousarray(test_rows, np.int64).tobytes())
    for file in sorted(data.fingerprints):
        digest.update(data.fingerprints[file].encode())
    main = data.files[f"{data.name}.npz"]
    profile = {"split": "test", "rows": len(test_rows)}
    return file_dataset(main, f"{data.name} test", digest.hexdigest()[:32], profile)
