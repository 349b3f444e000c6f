"""How a run's data sets share the lanes: each data set's work in a strand of its own, and
trials that take turns for the lanes in the order they asked.

A run's data sets flow on their own (ingest, validate, train, gate), so that nothing waits
for the other data set but the report. :class:`Strands` runs each data set's part in a
thread of the flow (with the flow's context, so the tasks it submits belong to the flow
run); :class:`Turns` keeps at most ``lanes`` trials in flight across all of them, given in
the order asked, so a trial submitted first (the CNN, the long pole) starts first.

Plain threading, no Prefect: the flow passes in what to run.
"""

from __future__ import annotations

import contextvars
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from typing import Any, Protocol, TypeVar

from keras_variants.interrupts import request_stop

T = TypeVar("T")
Item = TypeVar("Item")


class Done(Protocol):
    def add_done_callback(self, fn: Callable[[Any], None], /) -> None: ...


F = TypeVar("F", bound=Done)


def task_threads(lanes: int, datasets: int) -> int:
    """Threads a flow's task runner needs so nothing waits for one: a trial per lane, and
    beside them each data set's check, gate and figures, and the start's reads."""
    return lanes + 2 * datasets + 1


class Turns:
    """At most ``lanes`` trials in flight (None: no bound, as on a Dask cluster, which
    bounds them itself); a freed turn goes to the one that asked first."""

    def __init__(self, lanes: int | None) -> None:
        self._free = lanes
        self._waiting: deque[object] = deque()
        self._changed = threading.Condition()

    def take(self) -> None:
        """Wait for a turn (in the order asked), then hold it until :meth:`give_back`."""
        if self._free is None:
            return
        me = object()
        with self._changed:
            self._waiting.append(me)
            try:
                self._changed.wait_for(lambda: self._waiting[0] is me and self._free > 0)
                self._free -= 1
            finally:
                self._waiting.remove(me)
                self._changed.notify_all()  # the next in line may go too

    def give_back(self, *_: object) -> None:
        """End a turn (also usable as a future's done-callback)."""
        if self._free is None:
            return
        with self._changed:
            self._free += 1
            self._changed.notify_all()


def in_turns(
    items: Sequence[Item], submit: Callable[[Item], F], turns: Turns
) -> Iterator[tuple[Item, F]]:
    """Submit each of ``items`` as it gets a turn (in their order: a thread of its own waits
    for the turns, with this thread's context), and yield ``(item, future)`` as each
    future is done, so the caller says so at once, not after the last one was submitted.
    A turn is given back when its future is done. Leaving early submits no more."""
    finished: queue.Queue = queue.Queue()
    leaving = threading.Event()
    context = contextvars.copy_context()

    def submit_all() -> None:
        for item in items:
            turns.take()
            if leaving.is_set():
                turns.give_back()
                return
            try:
                future = submit(item)
            except BaseException as exc:
                turns.give_back()
                finished.put((item, None, exc))
                return
            future.add_done_callback(lambda done, item=item: _end_turn(turns, finished, item, done))

    threading.Thread(target=context.run, args=(submit_all,), name="turns", daemon=True).start()
    try:
        for _ in items:
            item, future, error = finished.get()
            if error is not None:
                raise error
            yield item, future
    finally:
        leaving.set()


def _end_turn(turns: Turns, finished: queue.Queue, item: object, future: object) -> None:
    turns.give_back()
    finished.put((item, future, None))


class Strands:
    """Work running side by side in threads of this process, each with a copy of the
    starting thread's context (Prefect's flow run and logger travel in it).

    :meth:`join` waits for all of them and returns their results; when one fails, or this
    thread is interrupted while it waits, every training is asked to stop
    (:func:`~keras_variants.interrupts.request_stop`) so that the others end soon, and
    the first error is raised once they have."""

    def __init__(self) -> None:
        self._futures: dict[str, Future] = {}
        self._errors: list[BaseException] = []  # in the order they happened
        self._lock = threading.Lock()

    def start(self, name: str, fn: Callable[..., T], /, *args: Any) -> None:
        """Run ``fn(*args)`` in a new thread named after ``name``."""
        future: Future = Future()
        context = contextvars.copy_context()

        def run() -> None:
            try:
                future.set_result(context.run(fn, *args))
            except BaseException as exc:  # handed to join, which raises it
                with self._lock:
                    self._errors.append(exc)
                request_stop()  # the other strands' trainings end soon
                future.set_exception(exc)

        self._futures[name] = future
        threading.Thread(target=run, name=f"strand-{name}", daemon=True).start()

    @property
    def failed(self) -> bool:
        """Whether a strand has failed: the others should start nothing new."""
        return bool(self._errors)

    def __enter__(self) -> Strands:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        """Leaving on an error of this thread (a data set that failed its checks, an
        interruption): the strands are asked to stop, and waited for."""
        if kind is not None:
            request_stop()
            for future in self._futures.values():
                future.exception()

    def join(self) -> dict[str, Any]:
        """Every strand's result by name, once all have ended; the first error otherwise."""
        try:
            for future in self._futures.values():
                future.exception()  # waits, interruptibly
        except BaseException:
            request_stop()
            for future in self._futures.values():
                future.exception()
            raise
        if self._errors:
            raise self._errors[0]  # the cause; the others stopped because of it
        return {name: f.result() for name, f in self._futures.items()}
