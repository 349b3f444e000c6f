"""Security: data files never run code, models never deserialize code, servers stay local."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import keras
import mlflow
import numpy as np
import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from keras_variants.config.variants import VARIANTS
from keras_variants.data.datasets import load_dataset, load_imdb
from keras_variants.data.npz import read_npz
from keras_variants.errors import DataError
from keras_variants.model.builders import build_model
from keras_variants.registry import gate, served_accuracy
from keras_variants.registry.versions import REGISTERED_MODELS
from tests.conftest import REPO, npz_with_member
from tests.helpers import process_wide_mlflow_uri

OBJECT_HEADER = {"descr": "|O", "fortran_order": False, "shape": (1,)}


class _Payload:
    """Pickles to a call of os.system that would create a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_pickle_payload_is_refused_and_never_runs(tmp_path: Path) -> None:
    marker, path = tmp_path / "pwned", tmp_path / "imdb.npz"
    npz_with_member(path, "x_train", pickle.dumps(_Payload(marker)), OBJECT_HEADER)
    with pytest.raises(DataError, match=r"imdb.npz: x_train: unsafe pickle payload refused"):
        read_npz(path, ("x_train",)).array("x_train")
    assert not marker.exists()


def test_pickle_payload_through_the_loader_never_runs(tmp_path: Path) -> None:
    marker, path = tmp_path / "pwned", tmp_path / "imdb.npz"
    npz_with_member(path, "x_train", pickle.dumps(_Payload(marker)), OBJECT_HEADER)
    for key in ("y_train", "x_test", "y_test"):
        header = {"descr": "<i8", "fortran_order": False, "shape": (1,)}
        npz_with_member(path, key, np.zeros(1, dtype="<i8").tobytes(), header)
    with pytest.raises(DataError, match=r"imdb\.npz: x_train: unsafe pickle payload refused"):
        load_imdb(path)
    assert not marker.exists()


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_no_variant_uses_lambda_layers(name: str) -> None:
    model = build_model(VARIANTS[name], seed=0)
    assert not [layer for layer in model.layers if isinstance(layer, keras.layers.Lambda)]


def test_model_with_code_never_loads_nor_becomes_champion(
    data_slices: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """A registered version whose .keras file carries a Lambda layer (Python bytecode) is
    refused by the gate's loader (Keras safe mode), and its code never runs."""
    marker = tmp_path / "pwned"

    def touch(x):
        marker.touch()
        return x

    inputs = keras.Input((10_000,))
    outputs = keras.layers.Dense(1, activation="sigmoid")(keras.layers.Lambda(touch)(inputs))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    process_wide_mlflow_uri(monkeypatch, uri)  # mlflow.keras.log_model takes no client
    client = MlflowClient(uri, registry_uri=uri)
    with mlflow.start_run() as run:
        info = mlflow.keras.log_model(keras.Model(inputs, outputs), name="model")
    marker.unlink()  # written while the model was built; it must not come back on loading
    name = REGISTERED_MODELS["imdb"]
    client.create_registered_model(name)
    source = client.get_logged_model(info.model_id).artifact_location
    version = client.create_model_version(
        name, source, run.info.run_id, tags={"variant": "imdb_dense"}, model_id=info.model_id
    ).version

    data = load_dataset("imdb", data_slices, 10_000)
    scorer = served_accuracy.ServedAccuracy(
        served_accuracy.gate_inputs(data, np.arange(len(data.test)))
    )
    decision = gate.promote(client, name, str(version), scorer)
    assert not decision.promoted
    assert "does not load or predict" in decision.reason and "Lambda" in decision.reason
    assert not marker.exists()
    with pytest.raises(MlflowException, match="champion"):
        client.get_model_version_by_alias(name, "champion")


def test_documented_servers_bind_to_loopback() -> None:
    """Every server command in the README's code blocks names --host 127.0.0.1."""
    blocks = re.findall(r"```bash\n(.*?)```", (REPO / "README.md").read_text(), re.S)
    servers = re.compile(r"^(mlflow (ui|server|models serve)|prefect server start|dask scheduler)")
    commands = [line for b in blocks for line in b.splitlines() if servers.match(line.strip())]
    assert commands
    for command in commands:
        assert "--host 127.0.0.1" in command, command
