"""How the ``variants`` process runs: library noise, Prefect and its server, TensorFlow.

Nothing happens on import. The command line calls :func:`prepare` first (environment
defaults, the allocator's set-up in :mod:`keras_variants.memory`, quiet or verbose library
logging), then what its command needs: :func:`start_prefect`, :func:`import_tensorflow`,
``prefect_server.stop`` and ``memory.freeze_gc`` on the way out.

Quiet (the default) means the user sees our own lines (progress, results, errors) and
library warnings that matter; with ``--verbose`` every library logs as it normally would and
errors come with their traceback.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

from keras_variants import memory, prefect_server
from keras_variants.errors import VariantsError
from keras_variants.prefect_server import EarlyServer

_verbose = False

ENVIRONMENT_DEFAULTS = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    # How long the temporary server may take to start (Prefect's default is 20 s); two runs
    # starting at once on two cores can need longer than that.
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    "GX_ANALYTICS_ENABLED": "false",
    # MLflow's telemetry: besides reporting usage, its thread that fetches a configuration
    # (failing without internet) deletes a variable from os.environ while other threads
    # read it (a CI run: Great Expectations' dict(os.environ) raised KeyError mid-check).
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "KERAS_BACKEND": "tensorflow",
    # One call to an MLflow server, bounded both ways (MLflow's defaults wait over four
    # minutes for a dead server, 7 x 120 s for a stalled one). urllib3 waits 0, 2f, 4f s
    # between attempts (factor f = 10): attempts at 0, 0, 20 and 60 s, so a restart unanswered
    # for up to ~60 s is ridden out (a 10 s stop and restart of the stack's server was 46 s
    # unanswered on a busy machine). A dead server refuses each attempt at once: the call
    # gives up after ~60 s. A stalled one (its kernel accepts connections, the process never
    # answers) costs each attempt the timeout too: 4 x 5 s + 60 s = ~80 s, within the ~90 s a
    # run may take to say so (tests/test_stack.py: killed and stalled). A request unanswered
    # for 5 s is sent again: logging the same metrics, params or tags twice changes nothing
    # (a run created twice would leave a RUNNING run for the next start-up's sweep).
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "10",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "5",
}
# Read by the libraries when they load, so they are set before any of them is imported.
QUIET_ENVIRONMENT = {
    # TensorFlow's C++ logs, the "E0000 ... NodeDef mentions attribute" lines included.
    "TF_CPP_MIN_LOG_LEVEL": "3",
    # MLflow's "Creating initial MLflow database tables" and alembic's migration lines.
    "MLFLOW_LOGGING_LEVEL": "WARNING",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    # "View run ... at" / "View experiment at", printed as each run ends against a tracking
    # server, by the command and by Dask workers alike (they prepare() in dask_setup): the
    # summary prints the links that matter.
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
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
    memory.tune_malloc()
    for name, value in (ENVIRONMENT_DEFAULTS | ({} if verbose else QUIET_ENVIRONMENT)).items():
        os.environ.setdefault(name, value)
    if not verbose:
        warnings.simplefilter("ignore")  # libraries' deprecation and usage warnings
        for name in NOISY_LOGGERS:
            logging.getLogger(name).setLevel(logging.ERROR)


def quiet_dask_client() -> None:
    """Call after importing Dask's ``distributed`` (which sets its loggers' levels): unless
    verbose, no "distributed.client" error line when the scheduler is lost (an empty
    line); the run's own error says so."""
    if not _verbose:
        logging.getLogger("distributed.client").setLevel(logging.CRITICAL)


def is_verbose() -> bool:
    return _verbose


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


def start_prefect(early_server: bool = True) -> EarlyServer:
    """Import Prefect (which sets up its logging) and quiet its console unless verbose;
    with ``early_server``, when no server is configured, start its temporary server first
    (:mod:`keras_variants.prefect_server`), so that the two load side by side. Call
    :meth:`EarlyServer.wait` before the first flow call."""
    if early_server:
        prefect_server.spawn(quiet=not _verbose)  # before Prefect's import: its start is longest
    import prefect.settings

    server = prefect_server.adopt(prefect.settings.get_current_settings())
    import prefect.main  # what `from prefect import flow` loads; sets up logging
    from prefect.logging.handlers import PrefectConsoleHandler

    if not _verbose:
        for handler in logging.getLogger().handlers:
            if isinstance(handler, PrefectConsoleHandler) and not any(
                isinstance(f, QuietConsole) for f in handler.filters
            ):
                handler.addFilter(QuietConsole())
    return server


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


def tool_command(tool: str) -> str:
    """How the user types ``tool`` (a console script of this environment, e.g. ``mlflow``)
    to run this environment's copy: its name when ``PATH`` finds that copy (an activated
    environment), else its path, relative to the working folder when inside it
    (``.venv/bin/mlflow`` right after ``make run``)."""
    import shutil

    here = Path(sys.executable).parent / tool
    found = shutil.which(tool)
    if found and Path(found).resolve() == here.resolve():
        return tool
    try:
        return str(here.relative_to(Path.cwd()))
    except ValueError:
        return str(here)
