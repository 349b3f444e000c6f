"""A Dask cluster this machine cannot join, or lost under a run, in the user's words.

The team stack's scheduler and workers talk TLS only and refuse a peer without a certificate
of the stack's CA (``scripts/stack``, docs/team-stack.md); a client finds its certificate in
Dask's configuration (``DASK_DISTRIBUTED__COMM__TLS__*``, set by ``scripts/stack env``).
:func:`check_security` says what is missing before the run starts.

Dask itself runs a trial again on another worker when the worker running it dies (up to
its ``distributed.scheduler.allowed-failures``, 3): a run survives a lost worker. What it
cannot survive is losing the scheduler (every future is cancelled) or a trial that killed
its workers too often; :func:`lost_cluster` names those, by the exception types' names (this
module reads Dask's configuration only, in :func:`check_security`).
"""

from __future__ import annotations

from pathlib import Path

from keras_variants.errors import ClusterError, what_was_registered

ADVICE = (
    "start the scheduler and its workers again (their workers exit with it; with the "
    "stack: scripts/stack up scheduler workers) and run again"
)


def lost_cluster(
    exc: BaseException, address: str | None, gated: tuple[str, ...] = ()
) -> ClusterError | None:
    """A clear error if ``exc`` (or what caused it) says the Dask cluster at ``address``
    was lost during the run; None for any other failure. ``gated``: the data sets whose
    gate had run."""
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
                f"this run's MLflow runs ended FAILED and {what_was_registered(gated)}: {ADVICE}"
            )
        if name == "KilledWorker":
            return ClusterError(
                f"a trial's Dask worker died each time Dask ran it on {where} ({text}); "
                f"this run's MLflow runs ended FAILED and {what_was_registered(gated)}: look at "
                "the workers' log for the cause (memory: give them more with --memory-limit), then "
                f"{ADVICE}"
            )
        cause = cause.__cause__ or cause.__context__
    return None


TLS_SETTINGS = {  # Dask's configuration key: the environment variable that sets it
    "distributed.comm.tls.ca-file": "DASK_DISTRIBUTED__COMM__TLS__CA_FILE",
    "distributed.comm.tls.client.cert": "DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT",
    "distributed.comm.tls.client.key": "DASK_DISTRIBUTED__COMM__TLS__CLIENT__KEY",
}
TLS_ADVICE = (
    'with the stack on this machine, eval "$(scripts/stack env)"; on another machine, a '
    "certificate from 'scripts/stack cert NAME' on the stack's machine (docs/team-stack.md)"
)


def check_security(address: str | None) -> None:
    """A clear error, before anything starts, if this machine cannot join the Dask
    scheduler at ``address`` as Dask is configured here: a ``tls://`` scheduler without the
    CA and a client certificate (or with a file that is not there), or a ``tcp://`` address
    where this machine's configuration asks for encryption."""
    if address is None:
        return
    import dask.config

    scheme = address.partition("://")[0] if "://" in address else "tcp"
    encrypted = dask.config.get("distributed.comm.require-encryption", None)
    if scheme == "tcp" and encrypted:
        raise ClusterError(
            f"the Dask scheduler {address} would be reached without encryption, which this "
            f"machine's Dask configuration forbids: pass its tls:// address ({TLS_ADVICE})"
        )
    if scheme != "tls":
        return
    for key, variable in TLS_SETTINGS.items():
        path = dask.config.get(key, None)
        if not path:
            raise ClusterError(
                f"the Dask scheduler {address} talks TLS and admits only holders of a "
                f"certificate of its CA, and {variable} is not set here: {TLS_ADVICE}"
            )
        if not Path(path).is_file():
            raise ClusterError(f"{variable}={path}: no such file; {TLS_ADVICE}")
