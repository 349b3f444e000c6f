"""The one door to MLflow's and Prefect's internals: every private name this package uses.

A private name is a bet against the next upgrade. Each function here makes one bet, names
the version it was written for (MLflow 3.17.2, Prefect 3.8.8: ``pyproject.toml``) and says
why the public API is not enough; ``tests/test_compat.py`` checks each bet against the
installed libraries, so an upgrade that loses one fails there, by name, not somewhere in a
pipeline run. Everything else in the package uses the public API only.

Imports: MLflow and Prefect, inside the functions (nothing happens at import).
"""

from __future__ import annotations

import inspect
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import mlflow.pyfunc
    from mlflow.models import Model
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor
    from mlflow.tracking import MlflowClient


def registry_uri(client: MlflowClient) -> str:
    """The model registry URI ``client`` is bound to.

    MLflow 3.17.2 keeps it in ``MlflowClient._registry_uri`` and has no public getter: the
    public ``mlflow.get_registry_uri()`` is the process-wide one, which this package never
    sets (``client.tracking_uri`` is public, but a client's registry may differ from it)."""
    return client._registry_uri


def set_model_version_source(client: MlflowClient, name: str, version: str, source: str) -> None:
    """Overwrite the ``source`` of model version ``version`` of ``name`` in ``client``'s
    registry, a local SQL store (SQLite).

    MLflow 3.17.2's public API sets a version's source only when creating it, and a local
    store resolves a ``models:/<model_id>`` source there through the process-wide tracking
    URI (why :mod:`keras_variants.registry.versions` rewrites it). This reaches the store
    through ``MlflowClient._get_registry_client().store`` and the version's row through
    ``SqlAlchemyStore._get_sql_model_version``, inside the store's own
    ``ManagedSessionMaker`` (which commits on leaving)."""
    store = client._get_registry_client().store
    with store.ManagedSessionMaker(read_only=False) as session:
        store._get_sql_model_version(session, name, str(version)).source = source


def stop_monitor_without_waiting(monitor: SystemMetricsMonitor) -> None:
    """Tell MLflow's system-metrics ``monitor`` thread to stop at its next look, and return
    at once: the thread (a daemon) is left to end by itself.

    MLflow 3.17.2's only public way to stop it, ``SystemMetricsMonitor.finish()``, joins the
    thread and flushes the batched metrics: against a dead or stalled tracking server each
    waits out MLflow's HTTP retries (about a minute), and a failed flush is logged at error
    level. The thread's stop signal is the private ``_shutdown_event``."""
    monitor._shutdown_event.set()


def set_service_loop_defaults(**defaults: Any) -> bool:
    """Change the defaults of Prefect's ``critical_service_loop`` (for example
    ``consecutive``, ``printer``) in this process, for every caller that does not pass them
    (the runner's poll for due runs passes neither); False, leaving the loop as it is, if its
    parameters are not the ones named.

    Prefect 3.8.8 has no setting for how many failed polls in a row stop a runner, nor for
    where the loop prints the errors; its runner (``prefect.runner._scheduled_run_poller``)
    imports the function itself, so replacing the module's name would miss it. What changes
    is the function's ``__defaults__``."""
    from prefect.utilities import services

    loop = services.critical_service_loop
    parameters = [
        p for p in inspect.signature(loop).parameters.values() if p.default is not p.empty
    ]
    current = {p.name: p.default for p in parameters}
    if not defaults.keys() <= current.keys() or len(parameters) != len(loop.__defaults__ or ()):
        return False
    current |= defaults
    loop.__defaults__ = tuple(current[p.name] for p in parameters)
    return True


class OwnInputChecks:
    """Mix into a ``mlflow.pyfunc.PythonModel`` subclass (before ``PythonModel``) whose
    ``predict`` checks its own inputs: MLflow then neither wraps ``predict`` in its type-hint
    validation (whose error lists the offending values) nor, when saving, suggests
    decorating it with that validation.

    MLflow 3.17.2 has no public switch for either: ``PythonModel.__init_subclass__`` skips
    the wrapping for a class whose ``_skip_type_hint_validation`` is true (meant for its own
    ChatModel), and signature inference stays quiet about a ``predict`` marked
    ``_is_pyfunc`` (what its ``@pyfunc`` decorator sets). The public decorator itself would
    validate against the type hints."""

    _skip_type_hint_validation = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "predict" in cls.__dict__:
            cls.predict._is_pyfunc = True  # type: ignore[attr-defined]


def pyfunc_model(
    python_model: mlflow.pyfunc.PythonModel,
    context: mlflow.pyfunc.PythonModelContext,
    meta: Model,
) -> mlflow.pyfunc.PyFuncModel:
    """``python_model`` (its context loaded) as the ``PyFuncModel`` that
    ``mlflow.pyfunc.load_model`` would return for the model folder described by ``meta``.

    MLflow 3.17.2 builds one only from a folder it loads itself (unpickling a
    ``python_model.pkl``, which this package never does); the adapter between
    ``PyFuncModel`` and a ``PythonModel`` is the private ``_PythonModelPyfuncWrapper``."""
    import mlflow.pyfunc
    from mlflow.pyfunc.model import _PythonModelPyfuncWrapper

    wrapper = _PythonModelPyfuncWrapper(python_model, context, meta.signature)
    return mlflow.pyfunc.PyFuncModel(model_meta=meta, model_impl=wrapper)


def process_wide_uri_slots() -> list[tuple[ModuleType, str]]:
    """Where MLflow keeps the process-wide tracking and registry URIs that
    ``mlflow.set_tracking_uri`` / ``set_registry_uri`` set, as (module, attribute) pairs, so
    that a test can put back exactly what was there (pytest's ``monkeypatch.setattr``).

    MLflow 3.17.2 has no public way to unset them: ``mlflow.get_tracking_uri()`` returns a
    default when none was set, and setting that default back would pin it; an unset registry
    URI follows the tracking URI, a set one no longer does."""
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    return [(tracking_utils, "_tracking_uri"), (registry_utils, "_registry_uri")]


def check_prefect_yaml(raw: dict[str, Any]) -> None:
    """Raise pydantic's ``ValidationError`` if ``raw`` (a parsed ``prefect.yaml``) is not
    what ``prefect deploy`` accepts.

    Prefect 3.8.8 reads the file into ``prefect.cli.deploy._models.PrefectYamlModel`` (in
    ``prefect.cli.deploy._config``) and has no public schema or check of it: the public way
    is to run ``prefect deploy`` against a server, which the workers' system test does."""
    from prefect.cli.deploy._models import PrefectYamlModel

    PrefectYamlModel.model_validate(raw)
