"""What a trial cost the machine: MLflow's system metrics (``system/cpu_utilization_percentage``,
``system/system_memory_usage_megabytes`` and ``_percentage``, disk and network) on its run.

MLflow's monitor samples the whole host with psutil in a thread of this process, every
``interval`` seconds, and logs each sample as a step; training itself runs in a lane, so
this process never imports TensorFlow for it. A run shorter than the interval would get no
sample from MLflow's thread (it stops before its first log), so the tail since the last
sample is logged when the run ends: every trained run has at least one step. The figures
are the host's, not the trial's alone: trials trained side by side share them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from keras_variants import compat
from keras_variants.tracking.store import server_unreachable

SAMPLING_INTERVAL_S = 10.0  # cheap: one psutil look per 10 s
PREFIX = "system/"

log = logging.getLogger("keras_variants.tracking")


@contextmanager
def system_metrics(
    tracking_uri: str, run_id: str, interval: float = SAMPLING_INTERVAL_S
) -> Iterator[None]:
    """Log the host's CPU, memory, disk and network use to ``run_id`` while the block runs
    (the run must be RUNNING); never fails the block: a monitor that cannot log is logged
    once and dropped."""
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    try:
        monitor = SystemMetricsMonitor(
            run_id, sampling_interval=interval, tracking_uri=tracking_uri
        )
        monitor.start()
    except Exception as exc:  # what it costs is worth knowing, not worth a trial
        log.warning("system metrics of run %s not logged: %s", run_id, exc)
        yield
        return
    try:
        yield
    except BaseException as exc:
        if server_unreachable(exc):
            _abandon(monitor)
        else:
            _finish(monitor, run_id)
        raise
    _finish(monitor, run_id)


def _abandon(monitor) -> None:
    """The block failed because the server stopped answering: tell the monitor's thread to
    stop and leave it (a daemon). Joining it, or logging the last sample, would each wait
    out MLflow's retries once more: for a dead or stalled server, a second ~60-80 s before
    the trial could say so (the thread's own call ends with its retries)."""
    compat.stop_monitor_without_waiting(monitor)


def _finish(monitor, run_id: str) -> None:
    """Stop the thread, then log what it sampled since its last step plus one last look."""
    try:
        monitor.finish()
        monitor.collect_metrics()
        monitor.publish_metrics(monitor.aggregate_metrics())
        monitor.mlflow_logger.flush()
    except Exception as exc:
        log.warning("system metrics of run %s: the last sample not logged: %s", run_id, exc)
