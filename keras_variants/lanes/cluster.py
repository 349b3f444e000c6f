"""A Dask cluster lost under a run, in the user's words.

Dask itself runs a trial again on another worker when the worker running it dies (up to
its ``distributed.scheduler.allowed-failures``, 3): a run survives a lost worker. What it
cannot survive is losing the scheduler (every future is cancelled) or a trial that killed
its workers too often; :func:`lost_cluster` names those, by the exception types' names so
that this module needs no Dask.
"""

from __future__ import annotations

from keras_variants.errors import ClusterError

ADVICE = (
    "start the scheduler and its workers again (their workers exit with it; with the "
    "stack: scripts/stack up scheduler workers) and run again"
)


def lost_cluster(exc: BaseException, address: str | None) -> ClusterError | None:
    """A clear error if ``exc`` (or what caused it) says the Dask cluster at ``address``
    was lost during the run; None for any other failure."""
    where = address or "the local Dask cluster"
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        name, text = type(cause).__name__, str(cause)
        if name in ("FutureCancelledError", "CancelledError") and "connection-lost" in text:
            return ClusterError(
                f"lost the Dask scheduler {where} during the run "
                f"({text.rpartition('reason: ')[2].splitlines()[0].rstrip('.')}); "
                f"this run's MLflow runs ended FAILED and nothing was registered: {ADVICE}"
            )
        if name == "KilledWorker":
            return ClusterError(
                f"a trial's Dask worker died each time Dask ran it on {where} ({text}); "
                "this run's MLflow runs ended FAILED and nothing was registered: look at the "
                "workers' log for the cause (memory: give them more with --memory-limit), then "
                f"{ADVICE}"
            )
        cause = cause.__cause__ or cause.__context__
    return None
