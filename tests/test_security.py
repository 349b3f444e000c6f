"""Security: data files never run code, models never deserialize code (they are saved as code,
loaded only as registered), servers stay local."""

from __future__ import annotations

import importlib.util
import pickle
import py_compile
import re
import sys
from pathlib import Path

import keras
import mlflow
import numpy as np
import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from keras_variants.config.variants import VARIANTS
from keras_variants.data.datasets import IMDB_WORD_INDEX_FILE, load_dataset, load_imdb
from keras_variants.data.npz import read_npz
from keras_variants.errors import DataError
from keras_variants.model.builders import build_model
from keras_variants.registry import gate, integrity, served_accuracy
from keras_variants.registry.versions import REGISTERED_MODELS, files_record
from keras_variants.serving import saving
from tests.conftest import REPO, npz_with_member
from tests.helpers import Processes, process_wide_mlflow_uri

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
    tags = {"variant": "imdb_dense"} | files_record(client, source)  # as registration does
    version = client.create_model_version(
        name, source, run.info.run_id, tags=tags, model_id=info.model_id
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
    """Every server command in the code blocks of the README and the docs names --host
    127.0.0.1, except on the team stack's page, which says how to listen beyond it."""
    pages = [
        REPO / "README.md",
        *(p for p in (REPO / "docs").glob("*.md") if p.stem != "team-stack"),
    ]
    blocks = [b for page in pages for b in re.findall(r"```bash\n(.*?)```", page.read_text(), re.S)]
    servers = re.compile(
        r"^(mlflow (ui|server|models serve)|prefect server start|dask scheduler|variants serve)"
    )
    commands = [line for b in blocks for line in b.splitlines() if servers.match(line.strip())]
    assert commands
    for command in commands:
        assert "--host 127.0.0.1" in command, command


@pytest.mark.parametrize(
    ("found", "problem"),
    [
        ({"MLmodel": "a", "served_model.py": "b"}, None),
        ({"MLmodel": "a", "served_model.py": "c"}, "served_model.py was changed"),
        ({"MLmodel": "a"}, "served_model.py is missing"),
        ({"MLmodel": "a", "served_model.py": "b", "z.pkl": "d"}, "z.pkl was added"),
        ({"MLmodel": "x", "served_model.py": "y"}, "MLmodel was changed"),  # the first
    ],
)
def test_the_first_file_not_as_registered(found: dict, problem: str | None) -> None:
    recorded = {"MLmodel": "a", "served_model.py": "b"}
    assert integrity.first_difference(recorded, found) == problem
    tag = integrity.record(recorded)  # one digest on the version, the table in its run
    assert len(tag) == 64 and integrity.matches(tag, found) is (problem is None)
    assert integrity.matches(integrity.encode(recorded), found) is (problem is None)  # old tags


MANIFEST = integrity.encode({"MLmodel": "a", "served_model.py": "b"})


@pytest.mark.parametrize(
    ("recorded", "manifest", "table"),
    [
        (integrity.record(integrity.decode(MANIFEST)), MANIFEST, {"MLmodel": "a",
                                                                  "served_model.py": "b"}),
        # A manifest edited to fit the changed files no longer hashes to the version's tag.
        (integrity.record(integrity.decode(MANIFEST)), MANIFEST.replace('"b"', '"c"'), None),
        (integrity.record(integrity.decode(MANIFEST)), None, None),  # the artifact is gone
        (MANIFEST, None, {"MLmodel": "a", "served_model.py": "b"}),  # an old tag is the table
    ],
)  # fmt: skip
def test_a_manifest_is_believed_only_if_it_hashes_to_the_tag(
    recorded: str, manifest: str | None, table: dict | None
) -> None:
    assert integrity.manifest_of(recorded, manifest) == table


@pytest.fixture
def registered(tmp_path: Path, data_slices: Path) -> tuple[MlflowClient, Path]:
    """An imdb-sentiment v1 in a store under ``tmp_path``, registered with its file
    hashes as the pipeline registers a version (an untrained model: only loading counts)."""
    folder = tmp_path / "model"
    variant = VARIANTS["imdb_dense"]
    word_index = data_slices / IMDB_WORD_INDEX_FILE
    saving.save_model(folder, variant, build_model(variant, seed=1), "A fine film.", word_index,
                      saving.requirements())  # fmt: skip
    return _register(tmp_path, folder), folder


def _register(tmp_path: Path, folder: Path) -> MlflowClient:
    """``folder`` as imdb-sentiment v1, the champion, of a new store under ``tmp_path``."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri, registry_uri=uri)
    name = REGISTERED_MODELS["imdb"]
    client.create_registered_model(name)
    source = folder.as_uri()
    run_id = client.create_run("0").info.run_id  # the trial's run keeps the files' manifest
    client.set_terminated(run_id)
    client.create_model_version(name, source, run_id, {"variant": "imdb_dense"}
                                | files_record(client, source, run_id))  # fmt: skip
    client.set_registered_model_alias(name, "champion", "1")
    return client


def _tamper(folder: Path, how: str, marker: Path) -> str:
    """Change the registered folder ``how``; the file that the refusal must name."""
    payload = f"\nimport pathlib\npathlib.Path({str(marker)!r}).touch()\n"
    if how == "changed":  # the model's code file, which loading runs
        with (folder / saving.MODEL_CODE_FILE).open("a") as code:
            code.write(payload)
        return f"{saving.MODEL_CODE_FILE} was changed"
    if how == "bytecode":  # Python runs a cached .pyc instead of its source, unchecked
        source = folder / saving.MODEL_CODE_FILE
        planted = folder.parent / "payload.py"
        planted.write_text(source.read_text() + payload)
        cached = Path(importlib.util.cache_from_source(str(source)))
        unchecked = py_compile.PycInvalidationMode.UNCHECKED_HASH  # never compared to the source
        py_compile.compile(str(planted), str(cached), invalidation_mode=unchecked)
        return f"{cached.relative_to(folder).as_posix()} was added"
    if how == "added":
        (folder / "artifacts" / "extra.pkl").write_bytes(pickle.dumps(_Payload(marker)))
        return "artifacts/extra.pkl was added"
    (folder / "artifacts" / "imdb_word_index.json").unlink()
    return "artifacts/imdb_word_index.json is missing"


@pytest.mark.parametrize("how", ["changed", "bytecode", "added", "missing"])
def test_a_tampered_version_is_refused_before_loading(registered, tmp_path, how) -> None:
    """The gate's and every command's loader refuses it naming the file; the payload put
    into it (code, bytecode, a pickle) never runs."""
    from keras_variants.errors import VariantsError
    from keras_variants.registry.loading import load_version

    client, folder = registered
    name = REGISTERED_MODELS["imdb"]
    assert load_version(client, name, "1").predict(["A fine film."])  # as registered: loads
    marker = tmp_path / "pwned"
    problem = _tamper(folder, how, marker)
    with pytest.raises(VariantsError, match=f"{name} v1: {re.escape(problem)} since it was"):
        load_version(client, name, "1")
    if how == "bytecode":  # also what a load without PYTHONDONTWRITEBYTECODE leaves
        with pytest.raises(VariantsError, match=r"delete that __pycache__ folder$"):
            load_version(client, name, "1")
    decision = gate.promote(client, name, "1", lambda model: 1.0)
    assert not decision.promoted and problem in decision.reason
    assert not marker.exists()


def test_a_version_whose_manifest_was_edited_too_is_refused(registered, tmp_path) -> None:
    """Files and their manifest (in the run's artifacts) changed together: the version's
    one digest still refuses the load, without naming a file it cannot know."""
    from keras_variants.errors import VariantsError
    from keras_variants.registry.loading import load_version

    client, folder = registered
    name = REGISTERED_MODELS["imdb"]
    version = client.get_model_version(name, "1")
    recorded = version.tags[integrity.FILES_TAG]
    assert len(recorded) == 64  # the manifest's digest, not the table
    _tamper(folder, "changed", tmp_path / "pwned")
    forged = integrity.encode(integrity.file_digests(folder))
    client.log_text(version.run_id, forged, integrity.manifest_path(recorded))
    with pytest.raises(VariantsError, match="its files are not the files registered"):
        load_version(client, name, "1")
    assert not (tmp_path / "pwned").exists()


def test_predict_and_serve_refuse_a_tampered_version(
    registered, tmp_path: Path, processes: Processes
) -> None:
    import subprocess

    from tests.helpers import BIN, free_port

    client, folder = registered
    marker = tmp_path / "pwned"
    problem = _tamper(folder, "changed", marker)
    env = processes.env(MLFLOW_TRACKING_URI=client.tracking_uri)
    for command in (
        ["predict", "--model", "imdb-sentiment", "A fine film."],
        ["serve", "--model", "imdb-sentiment", "--port", str(free_port())],
    ):
        done = subprocess.run([str(BIN / "variants"), *command], env=env, capture_output=True,
                              text=True, timeout=180)  # fmt: skip
        assert done.returncode == 1, done.stderr
        (line,) = done.stderr.strip().splitlines()
        assert line.startswith("error: imdb-sentiment v1: ") and problem in line
    assert not marker.exists()


def test_a_version_registered_before_hashes_is_refused_until_trusted(
    registered, tmp_path, processes
) -> None:
    """A version from before file hashes were recorded: every load says how to vouch for it;
    `variants trust` records its files as they are, and from then on a change is refused."""
    import subprocess

    from keras_variants.errors import VariantsError
    from keras_variants.registry.loading import load_version
    from tests.helpers import BIN

    client, folder = registered
    name = REGISTERED_MODELS["imdb"]
    client.delete_model_version_tag(name, "1", integrity.FILES_TAG)
    hint = f"variants trust --model {name} --version 1"
    with pytest.raises(VariantsError, match=re.escape(hint)):
        load_version(client, name, "1")
    env = processes.env(MLFLOW_TRACKING_URI=client.tracking_uri)

    def trust() -> subprocess.CompletedProcess:
        return subprocess.run([str(BIN / "variants"), "trust", "--model", name, "--version", "1"],
                              env=env, capture_output=True, text=True, timeout=120)  # fmt: skip

    done = trust()
    files = sum(path.is_file() for path in folder.rglob("*"))
    said = f"{name} v1: recorded the SHA-256 of its {files} files as they are now\n"
    assert (done.returncode, done.stdout) == (0, said), done.stderr
    assert load_version(client, name, "1").predict(["A fine film."])
    again = trust()  # recorded hashes are never replaced by the files as they are now
    assert again.returncode == 1 and "has its file hashes from registration" in again.stderr
    (folder / saving.MODEL_CODE_FILE).write_text("changed")
    with pytest.raises(VariantsError, match=r"served_model\.py was changed"):
        load_version(client, name, "1")


def test_loading_through_mlflow_does_not_make_a_version_unloadable(registered, monkeypatch) -> None:
    """``mlflow.pyfunc.load_model("models:/...")``, as a user may call it, writes MLflow's
    ``registered_model_meta`` into a local store's registered folder: not a changed file."""
    from keras_variants.registry.loading import load_version

    client, folder = registered
    name = REGISTERED_MODELS["imdb"]
    process_wide_mlflow_uri(monkeypatch, client.tracking_uri)
    mlflow.pyfunc.load_model(f"models:/{name}/1")
    assert (folder / "registered_model_meta").is_file()  # MLflow wrote into the folder
    assert load_version(client, name, "1").predict(["A fine film."])


def test_a_model_is_saved_as_code_and_loads_without_pickle_or_bytecode(registered, monkeypatch):
    """No pickle in the folder: MLflow runs the model's code file, with unpickling
    disallowed; loading writes no ``__pycache__`` into the folder, so a second load finds
    its files as registered."""
    from keras_variants.registry.loading import load_version

    client, folder = registered
    name = REGISTERED_MODELS["imdb"]
    assert (folder / saving.MODEL_CODE_FILE).is_file() and not list(folder.rglob("*.pkl"))
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")
    monkeypatch.setattr(sys, "dont_write_bytecode", False)  # as a user's Python writes .pyc
    for _ in range(2):
        (answer,) = load_version(client, name, "1").predict(["A fine film."])
        assert answer.label in ("positive", "negative")
    assert not (folder / "__pycache__").exists()
    assert sys.dont_write_bytecode is False  # restored


def test_a_version_saved_as_a_pickle_loads_without_reading_it(tmp_path, data_slices, monkeypatch):
    """A version registered before models were saved as code holds ``python_model.pkl``, a
    bare reference to the served class: it loads (the class comes from the model's
    configuration) and the pickle is never read, so even a payload recorded in it at
    registration never runs."""
    import tempfile

    from keras_variants.data.npz import sha256_of
    from keras_variants.registry.loading import load_version
    from keras_variants.serving import pyfunc

    folder, marker = tmp_path / "model", tmp_path / "pwned"
    variant = VARIANTS["imdb_dense"]
    word_index = data_slices / IMDB_WORD_INDEX_FILE
    with tempfile.TemporaryDirectory() as keras_folder:  # as save_model saved it before
        keras_file = Path(keras_folder) / "model.keras"
        build_model(variant, seed=1).save(keras_file)
        mlflow.pyfunc.save_model(
            str(folder),
            python_model=pyfunc.SentimentModel(),
            artifacts={pyfunc.KERAS_MODEL: str(keras_file), pyfunc.WORD_INDEX: str(word_index)},
            model_config={"variant": variant.model_dump(mode="json"),
                          "word_index_sha256": sha256_of(word_index.read_bytes())},
            input_example=(["A fine film."], {"mc_samples": 0}),
            pip_requirements=saving.requirements(),
        )  # fmt: skip
    (folder / saving.PICKLED_MODEL).write_bytes(pickle.dumps(_Payload(marker)))
    client = _register(tmp_path, folder)
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")
    model = load_version(client, REGISTERED_MODELS["imdb"], "1")
    assert type(model.unwrap_python_model()) is pyfunc.SentimentModel
    (answer,) = model.predict(["A fine film."])
    assert answer.label in ("positive", "negative")
    assert "mc_samples" in str(model.metadata.signature.params)
    assert not marker.exists()


def test_a_version_saved_as_code_answers_predict_and_serve(
    registered, tmp_path: Path, processes: Processes
) -> None:
    """``variants predict`` and ``variants serve`` load the registered version (a Python
    that writes bytecode) and answer; neither adds a file to its folder."""
    import json
    import subprocess
    from types import SimpleNamespace

    from keras_variants.registry.loading import load_version
    from tests.helpers import BIN
    from tests.test_model_server import REVIEW, start, stop

    client, folder = registered
    env = processes.env(MLFLOW_TRACKING_URI=client.tracking_uri)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    done = subprocess.run([str(BIN / "variants"), "predict", "--model", "imdb-sentiment", REVIEW],
                          env=env, capture_output=True, text=True, timeout=180)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "positive" in done.stdout or "negative" in done.stdout
    server = start(processes, SimpleNamespace(tracking_uri=client.tracking_uri),
                   env_extra={"PYTHONDONTWRITEBYTECODE": ""})  # fmt: skip
    try:
        answer = server.post({"inputs": [REVIEW]})
        assert answer.status_code == 200, answer.text
        (prediction,) = json.loads(answer.text)["predictions"]
        assert prediction["label"] in ("positive", "negative")
    finally:
        stop(server)
    assert not (folder / "__pycache__").exists()
    assert load_version(client, REGISTERED_MODELS["imdb"], "1").predict([REVIEW])


# --- lock files: a private folder, never written through a link ----------------------------


def test_lock_files_live_in_a_private_folder_and_never_follow_a_link(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os
    import stat

    from keras_variants.errors import ConfigError
    from keras_variants.tracking.locks import private_folder, store_lock

    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    uri = "http://127.0.0.1:5000"
    with store_lock(uri, "promote-m"):
        folder = private_folder()
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        (lock,) = folder.iterdir()
        assert stat.S_IMODE(lock.stat().st_mode) == 0o600

    # Another user planted a link where the next lock file goes: refused, target untouched.
    target = tmp_path / "victim.txt"
    target.write_text("keep")
    lock.unlink()
    lock.symlink_to(target)
    with (
        pytest.raises(ConfigError, match="the lock file is a symbolic link"),
        store_lock(uri, "promote-m"),
    ):
        pass
    assert target.read_text() == "keep"

    # A folder others may write into (or a link in its place) is not private: refused.
    os.chmod(folder, 0o777)
    with pytest.raises(ConfigError, match="not a private folder"):
        private_folder()
    lock.unlink()
    folder.rmdir()
    folder.symlink_to(tmp_path)
    with pytest.raises(ConfigError, match="not a private folder"):
        private_folder()
