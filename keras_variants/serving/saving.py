"""How a served model is saved and loaded: as code, never as a pickle.

A model folder holds the Keras model (``artifacts/model.keras``, loaded in Keras's safe
mode), the IMDb word index, and instead of a pickled Python object a short code file
(:data:`MODEL_CODE_FILE`, MLflow's models-from-code) that names the served class of
:mod:`keras_variants.serving.pyfunc` for the variant in the model's configuration; MLflow
runs it on loading. Everything the model does stays in that module: the preprocessing that
training uses. Loading never writes bytecode into the folder, whose files are checked
against the hashes recorded at registration (a ``__pycache__`` there could run instead of
the code file, so one that appears is refused as an added file).

Models saved before they were saved as code hold a ``python_model.pkl``: a bare reference
to the same class, which :func:`load_served` builds from the model's configuration
instead, so the pickle is never read.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow

from keras_variants import compat
from keras_variants.config.variants import VariantConfig
from keras_variants.data.npz import sha256_of
from keras_variants.errors import VariantsError
from keras_variants.serving.pyfunc import KERAS_MODEL, WORD_INDEX, served_model

MODEL_CODE_FILE = "served_model.py"
# The whole code file: it imports the installed package, so a model runs the code that
# serves it today, as a pickled reference to the class did.
MODEL_CODE = '''\
"""A keras-variants served model (MLflow models-from-code): the class of
keras_variants.serving.pyfunc for the variant in the model's configuration."""

from mlflow.models import ModelConfig, set_model

from keras_variants.serving.pyfunc import served_model

set_model(served_model(ModelConfig().to_dict()))
'''
PICKLED_MODEL = "python_model.pkl"  # what models saved before models-from-code hold
_logger = logging.getLogger(__name__)


def requirements() -> list[str]:
    """The packages a served model needs besides this one (which must be installed too)."""
    from importlib.metadata import version

    packages = ("mlflow", "keras", "tensorflow-cpu", "pillow", "scipy", "pydantic")
    return [f"{package}=={version(package)}" for package in packages]


def save_model(
    path: Path,
    variant: VariantConfig,
    keras_model: object,
    input_example: str,
    word_index: Path | None,
    pip_requirements: list[str],
) -> None:
    """Write the pyfunc model of a trained variant to the new folder ``path``."""
    config: dict[str, object] = {"variant": variant.model_dump(mode="json")}
    with tempfile.TemporaryDirectory() as folder:
        keras_file = Path(folder) / "model.keras"
        keras_model.save(keras_file)  # type: ignore[attr-defined]
        artifacts = {KERAS_MODEL: str(keras_file)}
        if variant.dataset == "imdb":
            if word_index is None:
                raise VariantsError("an IMDb model needs imdb_word_index.json to be served")
            artifacts[WORD_INDEX] = str(word_index)
            config["word_index_sha256"] = sha256_of(word_index.read_bytes())
        code = Path(folder) / MODEL_CODE_FILE
        code.write_text(MODEL_CODE)
        quiet_mlflow_notices()
        # MLflow runs the code file and may load the saved model
        with _MLFLOW_MODEL_CODE, _no_bytecode():
            mlflow.pyfunc.save_model(
                str(path),
                python_model=str(code),
                artifacts=artifacts,
                model_config=config,
                # The request parameter mc_samples: 0 (the default) is a plain prediction.
                input_example=([input_example], {"mc_samples": 0}),
                pip_requirements=pip_requirements,
            )


def load_served(folder: str) -> mlflow.pyfunc.PyFuncModel:
    """The served model saved in ``folder``, loaded as ``mlflow models serve`` loads it,
    without writing into the folder; one saved as a pickle, without reading the pickle."""
    quiet_mlflow_notices()
    if (Path(folder) / PICKLED_MODEL).exists():
        return _load_without_unpickling(folder)
    warn_if_environment_differs(folder)
    with _MLFLOW_MODEL_CODE, _no_bytecode():
        return mlflow.pyfunc.load_model(folder, suppress_warnings=True)


def warn_if_environment_differs(folder: str) -> list[str]:
    """MLflow's warnings on loading, checked more cheaply: each of the model's pinned
    requirements against the version installed (:func:`importlib.metadata.version`, where
    MLflow maps every installed file to its package first: about 1 s of CPU a process, 8 s
    on a busy machine), and the Python it was saved with. Returns the differences, each
    also logged as a warning."""
    from importlib.metadata import PackageNotFoundError, version

    from mlflow.models.model import Model

    differences = []
    pinned = Path(folder) / "requirements.txt"
    lines = pinned.read_text().splitlines() if pinned.is_file() else []
    for line in (line.strip() for line in lines):
        name, _, wanted = line.partition("==")
        if not wanted or name.startswith(("-", "#")):
            continue
        try:
            installed = version(name)
        except PackageNotFoundError:
            installed = None
        if installed != wanted:
            found = "is not installed" if installed is None else f"{installed} is installed"
            differences.append(f"{name} {found}; the model was saved with {wanted}")
    flavor = Model.load(folder).flavors.get(mlflow.pyfunc.FLAVOR_NAME, {})
    saved_with, running = flavor.get("python_version", ""), ".".join(map(str, sys.version_info[:3]))
    if saved_with and saved_with.split(".")[:2] != running.split(".")[:2]:
        differences.append(f"Python {running} runs it; the model was saved with {saved_with}")
    for difference in differences:
        _logger.warning("model %s: %s", folder, difference)
    return differences


def _load_without_unpickling(folder: str) -> mlflow.pyfunc.PyFuncModel:
    """A model saved before models-from-code: its ``python_model.pkl`` pickled a bare
    reference to the served class (no state), so the class comes from the model's
    configuration and is given the folder's artifacts, as MLflow would give them."""
    from mlflow.models.model import MODEL_CONFIG, Model
    from mlflow.pyfunc.model import PythonModelContext

    meta = Model.load(folder)
    flavor = meta.flavors[mlflow.pyfunc.FLAVOR_NAME]
    config: dict[str, Any] = flavor[MODEL_CONFIG]
    artifacts = {name: os.path.join(folder, a["path"]) for name, a in flavor["artifacts"].items()}
    context = PythonModelContext(artifacts=artifacts, model_config=config)
    python_model = served_model(config)
    python_model.load_context(context)
    return compat.pyfunc_model(python_model, context, meta)


# One save or load of a model's code at a time in a process: MLflow hands the code file its
# configuration and takes back the model through two module-wide variables, and its saving
# loses files when two run at once (the threads runner and Dask workers save and load in
# threads side by side; lanes are processes of their own).
_MLFLOW_MODEL_CODE = threading.Lock()
_BYTECODE = threading.Lock()
_bytecode_off = 0  # loads in progress that turned the writing of bytecode off
_bytecode_before = False


@contextmanager
def _no_bytecode() -> Iterator[None]:
    """Within it, Python writes no ``__pycache__`` (saving and loading run the model's code
    file from its folder, whose files must stay as saved and registered); overlapping uses
    in threads are counted,
    and the setting is restored when the last one ends."""
    global _bytecode_off, _bytecode_before
    with _BYTECODE:
        if _bytecode_off == 0:
            _bytecode_before = sys.dont_write_bytecode
            sys.dont_write_bytecode = True
        _bytecode_off += 1
    try:
        yield
    finally:
        with _BYTECODE:
            _bytecode_off -= 1
            if _bytecode_off == 0:
                sys.dont_write_bytecode = _bytecode_before


class _MlflowNotices(logging.Filter):
    """Drops MLflow's notices about what this module does on purpose: inferring the
    signature from the type hints, running the model on its input example."""

    NOTICES = ("Running the predict function", "Inferring model signature",
               "Downloading artifacts")  # fmt: skip

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.NOTICES)


def quiet_mlflow_notices() -> None:
    """Install the filter (again is harmless), and no progress bars for model loading."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # per model load
    for name in ("mlflow.pyfunc", "mlflow.models.signature", "mlflow.models.model"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _MlflowNotices) for f in logger.filters):
            logger.addFilter(_MlflowNotices())
