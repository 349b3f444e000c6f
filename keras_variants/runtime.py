"""How the ``variants`` process runs: library noise, memory, the Prefect server, exit.

Nothing happens on import. The command line calls :func:`prepare` first (environment
defaults, the malloc threshold, quiet or verbose library logging), then what its command
needs: :func:`start_prefect`, :func:`import_tensorflow`, :func:`stop_prefect_server`, and
:func:`freeze_gc` on the way out.

Quiet (the default) means the user sees our own lines (progress, results, errors) and
library warnings that matter; with ``--verbose`` every library logs as it normally would and
errors come with their traceback.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import ctypes.util
import gc
import importlib.util
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

from keras_variants.errors import VariantsError

_verbose = False

ENVIRONMENT_DEFAULTS = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    # How long the temporary server may take to start (Prefect's default is 20 s); two runs
    # starting at once on two cores can need longer than that.
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    "GX_ANALYTICS_ENABLED": "false",
    "KERAS_BACKEND": "tensorflow",
    # Bounded retries against an MLflow server, then a clear failure (defaults wait minutes).
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}
# Read by the libraries when they load, so they are set before any of them is imported.
QUIET_ENVIRONMENT = {
    # TensorFlow's C++ logs, the "E0000 ... NodeDef mentions attribute" lines included.
    "TF_CPP_MIN_LOG_LEVEL": "3",
    # MLflow's "Creating initial MLflow database tables" and alembic's migration lines.
    "MLFLOW_LOGGING_LEVEL": "WARNING",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    # Prefect's own lines ("Starting/Stopping temporary server"); flow and task run logs,
    # which carry our progress lines, stay at INFO.
    "PREFECT_LOGGING_LEVEL": "WARNING",
    "PREFECT_LOGGING_LOGGERS_PREFECT_FLOW_RUNS_LEVEL": "INFO",
    "PREFECT_LOGGING_LOGGERS_PREFECT_TASK_RUNS_LEVEL": "INFO",
}
RUN_LOGGERS = ("prefect.flow_runs", "prefect.task_runs")
# Libraries whose warnings are not the user's business (tf.function retracing, GX's
# temporary directories, Python warnings that Prefect logs, Dask's shutdown): shown from
# ERROR up.
NOISY_LOGGERS = (
    "tensorflow",
    "absl",
    "great_expectations",
    "h5py",
    "matplotlib",
    "py.warnings",
    "distributed",  # e.g. "Worker process still alive after 4.0 seconds, killing" at the end
)


VERBOSE_ENV = "KERAS_VARIANTS_VERBOSE"  # tells Dask worker processes started from here


def prepare(verbose: bool) -> None:
    """Set up this process for a command: call it before importing any library."""
    global _verbose
    _verbose = verbose
    os.environ[VERBOSE_ENV] = "1" if verbose else "0"
    _tune_malloc()
    for name, value in (ENVIRONMENT_DEFAULTS | ({} if verbose else QUIET_ENVIRONMENT)).items():
        os.environ.setdefault(name, value)
    if not verbose:
        warnings.simplefilter("ignore")  # libraries' deprecation and usage warnings
        for name in NOISY_LOGGERS:
            logging.getLogger(name).setLevel(logging.ERROR)


def is_verbose() -> bool:
    return _verbose


def _tune_malloc() -> None:
    """glibc only: serve allocations over 128 KiB from mmap, always, and at most two malloc
    arenas.

    Per-batch input tensors are tens of MB. glibc raises its mmap threshold after such a
    buffer is freed, so later ones land in per-thread heaps that never shrink: resident
    memory then grows by ~70 MB per epoch. A fixed threshold keeps it flat. TensorFlow's
    threads would each get an arena (up to 8 per core), whose free space stays resident:
    measured alone, two arenas lowered one trial's peak by 50-90 MB (BENCHMARKS.md).
    """
    libc_name = ctypes.util.find_library("c")
    if sys.platform.startswith("linux") and libc_name:
        m_arena_max, m_mmap_threshold = -8, -3
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(libc_name)
            libc.mallopt(m_mmap_threshold, 128 * 1024)
            libc.mallopt(m_arena_max, 2)


def expected_failure(exc: BaseException | None) -> bool:
    """Whether ``exc`` (or what caused it) is a failure the CLI reports in its own words:
    a user mistake or bad input, or an interruption."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, VariantsError | KeyboardInterrupt):
            return True
        if type(exc).__name__ == "TerminationSignal":  # Prefect's SIGTERM
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


class QuietConsole(logging.Filter):
    """Without ``--verbose``, what Prefect's console handler shows.

    Flow and task run lines (our progress and results) stay, except Prefect's "Finished in
    state" bookkeeping; other loggers show warnings and errors, the noisy ones errors only.
    Failures the CLI reports itself are dropped, and other errors lose their traceback.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info:
            if expected_failure(record.exc_info[1]):
                return False
            # Safe to change: the console handler sits on the root logger, so it runs after
            # the API handlers that ship the full record to Prefect's server.
            record.exc_info, record.exc_text = None, None
        if record.name.startswith(RUN_LOGGERS):
            # Prefect's bookkeeping, and its "crash" on Ctrl-C/SIGTERM: the CLI says "stopped".
            return not record.getMessage().startswith(
                (
                    "Finished in state",
                    "Crash detected! Execution was aborted by",
                    "Downloading flow code from storage",  # each run of a served deployment
                )
            )
        if record.name == "asyncio":  # a cancelled callback as a process exits: not ours
            return False
        if record.name.startswith(NOISY_LOGGERS):
            return record.levelno >= logging.ERROR
        if record.getMessage().startswith("Still processing items"):
            return False  # Prefect shipping its last events and logs at the end
        return record.levelno >= logging.WARNING


class EarlyServer:
    """Prefect's temporary server: a process of its own, started before Prefect is even
    imported here, so the two load side by side."""

    def __init__(self, process: subprocess.Popen | None = None, timeout: float = 0) -> None:
        self._process = process
        self._timeout = timeout

    def wait(self) -> None:
        """Return once the server answers; one clear error if it never does."""
        if self._process is None:
            return
        import httpx

        url = f"{os.environ['PREFECT_API_URL']}/health"
        deadline = time.monotonic() + self._timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                break
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(url, timeout=2).status_code == 200:
                    return
            time.sleep(0.05)
        code = self._process.poll()
        stop_prefect_server()
        ended = f"it ended with exit code {code}" if code is not None else "it did not answer"
        raise VariantsError(
            f"Prefect's temporary server did not start ({ended} within {self._timeout:.0f} s); "
            "run again with --verbose to see its output, or start one with 'prefect server "
            "start' and set PREFECT_API_URL"
        )


_server: subprocess.Popen | None = None  # the temporary server this process started


def start_prefect(early_server: bool = True) -> EarlyServer:
    """Import Prefect (which sets up its logging), quiet its console unless verbose, and,
    when no server is configured, start its temporary server first.

    The server is Prefect's own (``uvicorn`` on its app factory, the command Prefect's
    ``SubprocessASGIServer`` runs), started before this process imports Prefect, so that
    the two load side by side and this process never imports the server's code; it is
    pointed to through ``PREFECT_API_URL`` (inherited by the processes started from here).
    A profile that names a server, or allows no temporary one, stops it again at once.
    Call :meth:`EarlyServer.wait` before the first flow call.
    """
    global _server
    port = _free_port()
    if early_server and not os.environ.get("PREFECT_API_URL"):
        _server = _spawn_server(port)
        atexit.register(stop_prefect_server)
    import prefect.settings
    from prefect.context import refresh_global_settings_context

    settings = prefect.settings.get_current_settings()
    server = EarlyServer()
    if _server is not None and (settings.api.url or not settings.server.ephemeral.enabled):
        stop_prefect_server()  # the profile's choice, read only now
    elif _server is not None:
        os.environ["PREFECT_API_URL"] = f"http://127.0.0.1:{port}/api"
        os.environ["PREFECT_UI_URL"] = ""  # it serves no UI: no "View at" links to it
        refresh_global_settings_context()  # this process's settings see the URL too
        server = EarlyServer(_server, settings.server.ephemeral.startup_timeout_seconds)
    import prefect.main  # what `from prefect import flow` loads; sets up logging
    from prefect.logging.handlers import PrefectConsoleHandler

    if not _verbose:
        for handler in logging.getLogger().handlers:
            if isinstance(handler, PrefectConsoleHandler) and not any(
                isinstance(f, QuietConsole) for f in handler.filters
            ):
                handler.addFilter(QuietConsole())
    return server


def _spawn_server(port: int) -> subprocess.Popen:
    """Prefect's temporary server on ``port``, as Prefect itself starts one (its settings
    come from the same environment and profile)."""
    env = {
        **os.environ,
        "PREFECT_UI_ENABLED": "0",
        "PREFECT__SERVER_EPHEMERAL": "1",
        "PREFECT__SERVER_FINAL": "1",
    }
    spec = importlib.util.find_spec("prefect")  # where it is, without importing it
    app_dir = Path(spec.origin).parent.parent if spec and spec.origin else Path.cwd()
    command = [sys.executable, "-m", "uvicorn", "--app-dir", str(app_dir), "--factory",
               "prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port",
               str(port), "--log-level", "error", "--lifespan", "on"]  # fmt: skip
    return subprocess.Popen(command, env=env, preexec_fn=_ends_with_parent)


def _ends_with_parent() -> None:
    """In the server's process, before it runs: on Linux, a SIGTERM when this process ends
    in any way (killed before its exit handlers run, too), so no server is left behind."""
    if sys.platform == "linux":
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _free_port() -> int:
    """A free port of 127.0.0.1 (the system's choice, released for the server to take)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop_prefect_server() -> None:
    """Ship Prefect's pending logs and events, then stop the temporary server now (its
    runs are kept in Prefect's database, as with Prefect's own temporary server)."""
    global _server
    if _server is None:
        return
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        with contextlib.suppress(Exception):  # best effort: the run itself is over
            worker.drain_all(timeout=10)
    process, _server = _server, None
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    os.environ.pop("PREFECT_API_URL", None)
    os.environ.pop("PREFECT_UI_URL", None)
    from prefect.context import refresh_global_settings_context

    refresh_global_settings_context()


def import_tensorflow() -> None:
    """Import TensorFlow now; unless verbose, without its C++ start-up banner.

    TensorFlow's native libraries log (oneDNN, absl's "before InitializeLog" warning) to
    file descriptor 2 while loading, before TF_CPP_MIN_LOG_LEVEL applies, so the descriptor
    points at a temporary file meanwhile; if the import fails, that output is shown.
    """
    if "tensorflow" in sys.modules:
        return
    if _verbose:
        import tensorflow

        return
    with _native_stderr_hidden():
        import tensorflow  # noqa: F401


@contextlib.contextmanager
def _native_stderr_hidden() -> Iterator[None]:
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with tempfile.TemporaryFile() as captured:
            os.dup2(captured.fileno(), 2)
            try:
                yield
            except BaseException:
                os.dup2(saved, 2)
                captured.seek(0)
                os.write(2, captured.read())
                raise
            finally:
                os.dup2(saved, 2)
    finally:
        os.close(saved)


def dask_setup(worker: object) -> None:
    """Dask's start-up hook for worker processes that preload this module (the pipeline's
    local cluster does; start remote workers with ``--preload keras_variants.runtime``):
    the same quiet (or verbose) libraries as the command that started them."""
    prepare(os.environ.get(VERBOSE_ENV) == "1")
    start_prefect(early_server=False)
    import_tensorflow()


def release_memory() -> None:
    """Collect now, e.g. after a variant: a Keras model and its compiled functions hold
    reference cycles, ~50 MB a variant, freed only when the collector next runs."""
    gc.collect()


def freeze_gc() -> None:
    """At exit: everything alive dies with the process. Without this, the interpreter's
    last collections walk millions of TensorFlow/MLflow/Prefect objects (~5 s)."""
    gc.freeze()


def native_bfloat16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX), where Keras's
    mixed_bfloat16 policy pays; elsewhere it would be emulated, and slower."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(requested: str, architecture: str) -> str:
    """``auto`` as what pays on this machine for a model of ``architecture``; an explicit
    choice as it is.

    bfloat16 pays for convolutions only. In a lane (one TensorFlow thread per op) the
    lecture CNN's epochs take about half the time, while the dense IMDb variants took
    ~20% longer and ~30 MB more memory than in float32, and the MNIST dense one no less
    time (BENCHMARKS.md).
    """
    if requested != "auto":
        return requested
    return "mixed_bfloat16" if architecture == "cnn" and native_bfloat16() else "float32"
