"""Where a run's TensorFlow work happens: lanes.

With the default ``processes`` runner the orchestrating process (Prefect, MLflow, Great
Expectations, the data) never imports TensorFlow. ``max_parallel`` lane processes (fewer
when the run has fewer trials) start when the run first needs one and import only what the
work needs (TensorFlow, Keras, NumPy, and MLflow's pyfunc to save served models). Each
trial, gate score and encoded-data check (:mod:`keras_variants.lanes.jobs`) goes to a free
lane; a data set goes to the lanes once, as ``.npy`` files they memory-map; epoch reports
come back through a queue; a stop request (Ctrl-C, SIGTERM) reaches them through a shared
event that training checks after every batch.

:class:`HereLane` runs the same functions in the calling process: the ``threads`` runner,
and Dask workers, which are processes of their own.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import queue
import shutil
import signal
import sys
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, Protocol, TypeVar

from keras_variants import interrupts, memory, runtime
from keras_variants.config.pipeline import PipelineConfig
from keras_variants.data.datasets import Dataset
from keras_variants.data.mapped import MappedDataset, map_dataset
from keras_variants.errors import VariantsError
from keras_variants.lanes import jobs
from keras_variants.lanes.call import call_here

T = TypeVar("T")


class LaneDied(VariantsError):
    """A lane process ended abruptly (killed, or out of memory): every job of the run's
    lanes fails with this, since a process pool with a dead process takes no more work."""

    def __init__(self) -> None:
        super().__init__(
            "a lane process (where TensorFlow runs) ended abruptly: killed, or out of "
            "memory; this run stopped. Run again (with --max-parallel 1 if memory is short)"
        )


@contextlib.contextmanager
def _lane_deaths() -> Iterator[None]:
    """A dead lane in the user's terms: :class:`LaneDied`, not ``BrokenProcessPool``."""
    try:
        yield
    except BrokenProcessPool as exc:
        raise LaneDied() from exc


class Lane(Protocol):
    def call(self, fn: Callable[..., T], /, *args: Any) -> T:
        """``fn(*args)`` where TensorFlow work runs; its result."""
        ...

    def train(self, job: jobs.TrainJob, report: jobs.EpochReport) -> jobs.TrainedVariant:
        """:func:`jobs.train`, calling ``report`` in this thread after every epoch."""
        ...

    def share(self, data: Dataset) -> Dataset | MappedDataset:
        """``data`` as a job should carry it."""
        ...

    def warm(self) -> None:
        """Start now what the first job needs (lane processes import for seconds), so that
        it happens beside other work."""
        ...


class HereLane:
    """This process: for the threads runner and inside Dask workers. With
    ``one_trial_at_a_time`` (Dask workers, started with one thread each), a trial sets the
    allocation policy for its inputs as in a lane process; the threads runner trains
    several at once in one process, under the lean policy."""

    def __init__(self, one_trial_at_a_time: bool = False) -> None:
        self.one_trial_at_a_time = one_trial_at_a_time

    def call(self, fn: Callable[..., T], /, *args: Any) -> T:
        return call_here(fn, *args)

    def train(self, job: jobs.TrainJob, report: jobs.EpochReport) -> jobs.TrainedVariant:
        from keras_variants.model.training import configure_runtime

        configure_runtime()  # Keras keeps some of its switches per thread
        if self.one_trial_at_a_time:
            memory.allocate_for(job.variant.input_encoding)
        try:
            return jobs.train(job, report)
        finally:
            memory.release_memory()

    def share(self, data: Dataset) -> Dataset:
        return data

    def warm(self) -> None:
        pass  # this process: TensorFlow is imported by the first job


class ProcessLanes:
    """``workers`` lane processes, each with ``threads`` TensorFlow threads per op."""

    def __init__(self, workers: int, threads: int) -> None:
        context = multiprocessing.get_context("spawn")  # never fork a threaded process
        self._folder = Path(tempfile.mkdtemp(prefix="keras-variants-lanes-"))
        self._reports = context.Queue()
        self._stop = context.Event()
        self._inboxes: dict[str, queue.Queue] = {}
        self._shared: dict[tuple, MappedDataset] = {}
        self._lock = threading.Lock()
        self._pool = ProcessPoolExecutor(
            workers,
            mp_context=context,
            initializer=_start_lane,
            initargs=(runtime.is_verbose(), self._reports, self._stop, threads),
        )
        self._previous_stop = interrupts.share_stop_flag(self._stop)
        self._router = threading.Thread(target=self._route, name="lane-reports", daemon=True)
        self._router.start()
        self._workers, self._started = workers, False

    def _start(self) -> None:
        """On first use (a run that reuses every trial needs none): one job per lane, so
        every lane starts importing at once, while the first job's data is prepared."""
        with self._lock:
            if not self._started:
                self._started = True
                for _ in range(self._workers):
                    self._pool.submit(_ready)

    def warm(self) -> None:
        self._start()

    def call(self, fn: Callable[..., T], /, *args: Any) -> T:
        self._start()
        with _lane_deaths():
            return self._pool.submit(fn, *args).result()

    def train(self, job: jobs.TrainJob, report: jobs.EpochReport) -> jobs.TrainedVariant:
        self._start()
        job_id = uuid.uuid4().hex
        inbox: queue.Queue = queue.Queue()
        self._inboxes[job_id] = inbox
        try:
            with _lane_deaths():
                future = self._pool.submit(_train_in_lane, job_id, job)
                while (item := _next_report(inbox, future)) is not None:
                    report(*item)
                return future.result()
        finally:
            del self._inboxes[job_id]

    def share(self, data: Dataset) -> MappedDataset:
        self._start()
        key = (data.name, tuple(sorted(data.fingerprints.items())))
        with self._lock:
            if key not in self._shared:
                folder = self._folder / f"{data.name}-{len(self._shared)}"
                self._shared[key] = map_dataset(data, folder)
            return self._shared[key]

    def close(self, interrupted: bool) -> None:
        """Stop the lanes (at once when ``interrupted``) and remove the shared files."""
        if interrupted:
            self._stop.set()
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._reports.put(None)
        self._router.join(timeout=5)
        interrupts.share_stop_flag(self._previous_stop)
        shutil.rmtree(self._folder, ignore_errors=True)

    def _route(self) -> None:
        while (item := self._reports.get()) is not None:
            job_id, report = item
            inbox = self._inboxes.get(job_id)
            if inbox is not None:
                inbox.put(report)


def _next_report(inbox: queue.Queue, future: Future) -> tuple | None:
    """The job's next epoch report; None after its last (or when its lane failed)."""
    while True:
        try:
            return inbox.get(timeout=0.5)
        except queue.Empty:
            if future.done() and future.exception() is not None:
                return None


def lane_count(max_parallel: int, trials: int | None) -> int:
    """How many lane processes a run starts: ``max_parallel``, but no more than the
    ``trials`` it can train at once (None: not known yet, as with --seeds auto, which adds
    trials as it goes). A lane more would import TensorFlow and MLflow's pyfunc for nothing
    (4 CPU s and 670 MB measured, idle) and take half the cores from the one that trains."""
    return max_parallel if trials is None else max(1, min(max_parallel, trials))


@contextlib.contextmanager
def opened(config: PipelineConfig, trials: int | None = None) -> Iterator[Lane]:
    """The lanes ``config``'s runner asks for, for the length of a run of ``trials``
    trials (:func:`lane_count`), the cores shared among them."""
    if config.runner != "processes":
        yield HereLane(one_trial_at_a_time=config.runner == "dask")
        return
    workers = lane_count(config.max_parallel, trials)
    lanes = ProcessLanes(workers, threads=max(1, (os.cpu_count() or 1) // workers))
    try:
        yield lanes
    except BaseException:
        lanes.close(interrupted=True)
        raise
    lanes.close(interrupted=False)


def reuses_nothing(config: PipelineConfig) -> bool:
    """Whether no trial of the run can be an earlier one's: ``--force``, or a local store
    that does not exist yet (a new folder). Then lanes are sure to be needed."""
    if config.force:
        return True
    local = config.tracking_uri.startswith("sqlite:///")
    return local and not Path(config.tracking_uri.removeprefix("sqlite:///")).exists()


# In a lane process:

_reports: Any = None  # the queue of epoch reports to the orchestrator


def _start_lane(verbose: bool, reports: Any, stop: Any, threads: int) -> None:
    """A lane's start: the same quiet (or verbose) libraries as the command, then TensorFlow
    with ``threads`` threads per op, and what saving a served model needs."""
    global _reports
    # Ctrl-C reaches every process of the terminal; the orchestrator stops lanes itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    runtime.prepare(verbose)
    # Keras imports matplotlib's pyplot when it is installed, for an image gallery a lane
    # never draws: 24 MB of every lane. None in sys.modules fails that import the way
    # Keras expects of a package that is not installed.
    sys.modules.setdefault("matplotlib", None)  # type: ignore[assignment]
    runtime.import_tensorflow()
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    from keras_variants.model.training import configure_runtime
    from keras_variants.serving import pyfunc  # noqa: F401  (MLflow's pyfunc, for saving models)

    configure_runtime()
    interrupts.share_stop_flag(stop)
    _reports = reports


def _ready() -> int:
    return os.getpid()


def _train_in_lane(job_id: str, job: jobs.TrainJob) -> jobs.TrainedVariant:
    def report(epoch: int, epochs: int, logs: dict[str, float], seconds: float) -> None:
        _reports.put((job_id, (epoch, epochs, {k: float(v) for k, v in logs.items()}, seconds)))

    memory.allocate_for(job.variant.input_encoding)
    try:
        return jobs.train(job, report)
    finally:
        _reports.put((job_id, None))
        _forget_models()


def _forget_models() -> None:
    """Between jobs: Keras's global state (graphs, name counters) of the last model goes,
    and with it the memory its traced functions held, and the heap's free space goes back
    to the system. Safe here, not in a shared process: a lane runs one job at a time."""
    import keras

    keras.backend.clear_session()
    memory.release_memory()
