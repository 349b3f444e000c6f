"""The bets of :mod:`keras_variants.compat` against the installed MLflow and Prefect: each
private name it relies on still exists with the shape it expects, and each function does
its job on real objects (a SQLite MLflow store under ``tmp_path``, Prefect's real service
loop). A failure here after an upgrade names the bet that was lost; the function's
docstring says what it was for. Quick: no servers.

Deprecation warnings from MLflow, Prefect and this package are errors here (the suite
ignores them elsewhere), so that a bet about to be lost says so one upgrade early.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import warnings
from pathlib import Path
from typing import Any

import httpx
import mlflow
import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from keras_variants import compat
from keras_variants.tracking.datasets import file_dataset
from tests.helpers import process_wide_mlflow_uri

pytestmark = [
    pytest.mark.filterwarnings(f"error::{kind}:(mlflow|prefect|keras_variants)")
    for kind in ("DeprecationWarning", "FutureWarning")
]


def test_the_pinned_versions_are_the_ones_the_bets_were_written_for() -> None:
    """A new MLflow or Prefect: read each bet in ``compat`` against the new version, then
    change the versions here and in its docstrings."""
    import prefect

    assert (mlflow.__version__, prefect.__version__) == ("3.17.2", "3.8.8")


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> MlflowClient:
    """A client of a real SQLite store, for runs and registry alike."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('compat') / 'mlflow.db'}"
    return MlflowClient(uri, registry_uri=uri)


def test_registry_uri_is_the_one_the_client_was_given(client: MlflowClient) -> None:
    tracking = client.tracking_uri
    assert compat.registry_uri(client) == tracking
    assert compat.registry_uri(MlflowClient(tracking, registry_uri="http://mlflow:5000")) == (
        "http://mlflow:5000"
    )
    assert compat.registry_uri(MlflowClient(tracking)) == tracking  # defaults to tracking


def test_a_versions_source_is_rewritten_in_a_local_store(
    client: MlflowClient, tmp_path: Path
) -> None:
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore

    store = client._get_registry_client().store
    assert isinstance(store, SqlAlchemyStore)
    assert callable(store.ManagedSessionMaker)
    assert list(inspect.signature(store._get_sql_model_version).parameters)[:3] == [
        "session",
        "name",
        "version",
    ]
    client.create_registered_model("m")
    version = client.create_model_version("m", tmp_path.as_uri())
    compat.set_model_version_source(client, "m", version.version, "models:/m-0123")
    assert client.get_model_version("m", version.version).source == "models:/m-0123"
    # where the files are downloaded from stays the folder it was created from
    assert client.get_model_version_download_uri("m", version.version) == tmp_path.as_uri()


def test_a_monitor_told_to_stop_ends_its_thread_without_being_joined(
    client: MlflowClient,
) -> None:
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    run = client.create_run(client.create_experiment("monitored"))
    monitor = SystemMetricsMonitor(
        run.info.run_id, sampling_interval=60, tracking_uri=client.tracking_uri
    )
    assert isinstance(monitor._shutdown_event, threading.Event)
    monitor.start()
    compat.stop_monitor_without_waiting(monitor)
    # The thread was waiting out its 60 s interval; the event ends the wait and the loop.
    monitor._process.join(timeout=30)
    assert not monitor._process.is_alive()
    client.set_terminated(run.info.run_id)


@pytest.fixture
def service_loop_defaults():
    """Put Prefect's ``critical_service_loop`` defaults back after the test."""
    from prefect.utilities import services

    before = services.critical_service_loop.__defaults__
    yield services.critical_service_loop
    services.critical_service_loop.__defaults__ = before


def test_the_service_loop_takes_new_defaults(service_loop_defaults) -> None:
    """The runner's loop then gives up after the new number of failures, printing to the
    new printer; the runner (Prefect's ``_scheduled_run_poller``) calls the same function
    and passes neither, so the defaults reach it."""
    from prefect.runner import _scheduled_run_poller

    loop = service_loop_defaults
    assert _scheduled_run_poller.critical_service_loop is loop
    poller_source = inspect.getsource(_scheduled_run_poller)
    assert "consecutive" not in poller_source and "printer" not in poller_source

    printed: list[str] = []
    calls: list[int] = []

    async def refused() -> None:
        calls.append(1)
        raise httpx.ConnectError("refused")

    def printer(*parts: Any) -> None:
        printed.append(" ".join(map(str, parts)))

    assert compat.set_service_loop_defaults(consecutive=5, printer=printer)
    with pytest.raises(RuntimeError, match="error threshold"):
        asyncio.run(loop(refused, interval=0))
    assert len(calls) == 5
    assert any("Failed the last 5 attempts" in line for line in printed)


def test_a_service_loop_without_the_named_parameter_is_left_alone(
    service_loop_defaults,
) -> None:
    before = service_loop_defaults.__defaults__
    assert not compat.set_service_loop_defaults(consecutive=5, retries_per_minute=3)
    assert service_loop_defaults.__defaults__ == before


class Checked(compat.OwnInputChecks, mlflow.pyfunc.PythonModel):
    def predict(self, context: Any, model_input: list[str], params: Any = None) -> list[str]:
        return [f"got {value!r}" for value in model_input]


def test_a_model_that_checks_its_own_inputs_is_not_wrapped_by_mlflow() -> None:
    """MLflow would refuse ``[7]`` against ``list[str]`` (and list the values); the model
    gets it; and inferring the signature from the type hints asks for no decorator."""
    from mlflow.models.signature import _infer_signature_from_type_hints

    class Plain(mlflow.pyfunc.PythonModel):  # what MLflow does without the mixin
        def predict(self, context: Any, model_input: list[str], params: Any = None) -> list[str]:
            return model_input

    with pytest.raises(MlflowException, match="type hint"):
        Plain().predict(None, [7])
    assert Checked().predict(None, [7]) == ["got 7"]
    assert Checked.predict is Checked.__dict__["predict"]  # not replaced by a wrapper
    assert Checked.predict._is_pyfunc is True

    class Unmarked(mlflow.pyfunc.PythonModel):  # not wrapped, and so not marked either
        _skip_type_hint_validation = True

        def predict(self, context: Any, model_input: list[str], params: Any = None) -> list[str]:
            return model_input

    def asks_for_the_decorator(model: mlflow.pyfunc.PythonModel) -> bool:
        warnings.onceregistry.clear()  # MLflow shows this warning once per process
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            signature = _infer_signature_from_type_hints(model, None, model.predict_type_hints)
        assert signature is not None
        return any("@mlflow.pyfunc.utils.pyfunc" in str(w.message) for w in caught)

    assert asks_for_the_decorator(Unmarked())
    assert not asks_for_the_decorator(Checked())


def test_a_python_model_becomes_the_pyfunc_model_mlflow_would_load() -> None:
    from mlflow.models import Model
    from mlflow.pyfunc.model import PythonModelContext

    model = Checked()
    context = PythonModelContext(artifacts={}, model_config={})
    loaded = compat.pyfunc_model(model, context, Model())
    assert isinstance(loaded, mlflow.pyfunc.PyFuncModel)
    assert loaded.unwrap_python_model() is model
    assert loaded.predict(["a"]) == ["got 'a'"]


def test_the_process_wide_uris_are_put_back_exactly(tmp_path: Path) -> None:
    """As tests set them (:func:`tests.helpers.process_wide_mlflow_uri`), and after."""
    slots = compat.process_wide_uri_slots()
    before = [getattr(module, name) for module, name in slots]
    uri = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    with pytest.MonkeyPatch.context() as monkeypatch:
        process_wide_mlflow_uri(monkeypatch, uri)
        assert [getattr(module, name) for module, name in slots] == [uri, uri]
        assert (mlflow.get_tracking_uri(), mlflow.get_registry_uri()) == (uri, uri)
    assert [getattr(module, name) for module, name in slots] == before
    assert uri not in (mlflow.get_tracking_uri(), mlflow.get_registry_uri())


def test_a_file_dataset_is_the_entity_mlflow_would_make(tmp_path: Path) -> None:
    """``tracking.datasets`` builds the entity from MLflow's public ``Dataset.to_dict()``;
    MLflow's own callers use the private ``_to_mlflow_entity()``: the same fields."""
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset

    path = tmp_path / "mnist.npz"
    path.write_bytes(b"rows")
    with pytest.warns(UserWarning):  # a local path matches two equivalent source kinds
        source = resolve_dataset_source(str(path))
    theirs = MetaDataset(source, name="mnist.npz", digest="d" * 32)._to_mlflow_entity()
    ours = file_dataset(path, "mnist.npz", "d" * 32)
    assert ours.to_dictionary() == theirs.to_dictionary()
    profiled = file_dataset(path, "mnist test", "e" * 32, {"split": "test", "rows": 3})
    assert (profiled.source_type, profiled.profile) == ("local", '{"split": "test", "rows": 3}')


def test_a_prefect_yaml_is_checked_as_prefect_deploy_reads_it() -> None:
    from prefect.cli.deploy import _config
    from pydantic import ValidationError

    assert "PrefectYamlModel.model_validate" in inspect.getsource(_config)
    compat.check_prefect_yaml({"name": "p", "deployments": [{"name": "d", "entrypoint": "f.py:f"}]})
    with pytest.raises(ValidationError):
        compat.check_prefect_yaml({"deployments": [{"name": "d", "concurrency_limit": "one"}]})
