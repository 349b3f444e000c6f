"""A lost Dask cluster or MLflow tracking server, told from other errors and named."""

from __future__ import annotations

import pytest


class FutureCancelledError(Exception):
    """Named like Dask's: the classifier goes by names, so that it needs no Dask."""


class KilledWorker(Exception):
    pass


def _raised_from(cause: BaseException) -> BaseException:
    try:
        try:
            raise cause
        except BaseException as inner:
            raise RuntimeError("task failed") from inner
    except RuntimeError as outer:
        return outer


@pytest.mark.parametrize(
    ("cause", "expected"),
    [
        (FutureCancelledError("k cancelled for reason: scheduler-connection-lost."), "scheduler"),
        (KilledWorker("Attempted to run task k on 4 different workers"), "died each time"),
        (FutureCancelledError("k cancelled for reason: unknown."), None),  # e.g. Ctrl-C
        (ValueError("scheduler-connection-lost"), None),
    ],
)
def test_a_lost_dask_cluster_is_named_and_nothing_else(cause, expected) -> None:
    from keras_variants.lanes.cluster import lost_cluster

    error = lost_cluster(_raised_from(cause), "tcp://h:8786")
    if expected is None:
        assert error is None
    else:
        assert expected in str(error) and "tcp://h:8786" in str(error)


@pytest.mark.parametrize(
    ("message", "uri", "lost"),
    [
        ("API request to http://h:5000/api/2.0/mlflow/runs/log-batch failed with exception "
         "HTTPConnectionPool(host='h', port=5000): Max retries exceeded with url: ...",
         "http://h:5000", True),
        ("API request to http://h:5000/x failed with exception Max retries exceeded",
         "sqlite:///mlflow.db", False),  # not a server
        ("RESOURCE_DOES_NOT_EXIST: Run 'abc' not found", "http://h:5000", False),
    ],
)  # fmt: skip
def test_an_mlflow_server_that_stopped_answering_is_named(message, uri, lost) -> None:
    from mlflow.exceptions import MlflowException

    from keras_variants.tracking.store import lost_server

    error = lost_server(_raised_from(MlflowException(message)), uri)
    assert (error is not None) == lost
    if lost:
        assert f"MLflow tracking server {uri} stopped answering" in str(error)
