"""How data sets share the lanes: trials take turns in the order asked, each is reported as
it ends, and a failed data set stops the others and is the error raised."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor

import pytest

from keras_variants import interrupts
from keras_variants.lanes.turns import Strands, Turns, in_turns


@pytest.fixture(autouse=True)
def _no_stop_left():
    interrupts.clear_stop_request()
    yield
    interrupts.clear_stop_request()


def test_a_freed_turn_goes_to_the_one_that_asked_first() -> None:
    turns = Turns(1)
    turns.take()
    started: list[str] = []

    def wait(name: str) -> None:
        turns.take()
        started.append(name)
        turns.give_back()

    first = threading.Thread(target=wait, args=("first",))
    first.start()
    time.sleep(0.05)  # asks first
    second = threading.Thread(target=wait, args=("second",))
    second.start()
    time.sleep(0.05)
    assert started == []  # both wait for the one turn
    turns.give_back()
    first.join(5)
    second.join(5)
    assert started == ["first", "second"]


def test_trials_are_reported_as_they_end_not_after_the_last_was_submitted() -> None:
    """Two lanes, three trials: the short second one is reported before the third starts,
    and never more than two are in flight."""
    turns = Turns(2)
    release = {name: threading.Event() for name in "abc"}
    running: list[str] = []
    most = [0]
    pool = ThreadPoolExecutor(3)

    def submit(name: str) -> Future:
        running.append(name)
        most[0] = max(most[0], len(running))

        def work() -> str:
            release[name].wait(5)
            running.remove(name)
            return name

        return pool.submit(work)

    ended = in_turns("abc", submit, turns)
    release["b"].set()
    assert next(ended)[0] == "b"
    deadline = time.monotonic() + 5
    while "c" not in running:  # c gets b's turn, while a still trains
        assert time.monotonic() < deadline, "c never started"
        time.sleep(0.01)
    assert "a" in running
    release["a"].set()
    release["c"].set()
    assert sorted(name for name, _ in ended) == ["a", "c"]
    assert most[0] == 2
    pool.shutdown()


def test_no_bound_submits_everything_at_once() -> None:
    futures = {name: Future() for name in "xyz"}
    ended = in_turns("xyz", futures.__getitem__, Turns(None))
    for future in futures.values():  # all submitted before any ended
        threading.Timer(0.05, future.set_result, args=(None,)).start()
    assert sorted(name for name, _ in ended) == ["x", "y", "z"]


def test_a_failed_strand_stops_the_others_and_its_error_is_raised() -> None:
    def fails() -> None:
        raise ValueError("imdb.npz: y_train (label): labels are 0 or 1")

    def trains() -> str:
        deadline = time.monotonic() + 5
        while not interrupts.stop_requested():  # as training checks after every batch
            assert time.monotonic() < deadline, "never asked to stop"
            time.sleep(0.01)
        raise KeyboardInterrupt("stop requested")

    strands = Strands()
    strands.start("mnist", trains)
    time.sleep(0.05)
    strands.start("imdb", fails)
    with pytest.raises(ValueError, match="labels are 0 or 1"):
        strands.join()
    assert strands.failed


def test_strands_give_their_results_by_name() -> None:
    with Strands() as strands:
        strands.start("mnist", lambda: 1)
        strands.start("imdb", lambda: 2)
        assert strands.join() == {"mnist": 1, "imdb": 2}
    assert not interrupts.stop_requested()


def test_an_error_of_the_starting_thread_stops_the_strands_and_waits_for_them() -> None:
    ended = threading.Event()

    def trains() -> None:
        while not interrupts.stop_requested():
            time.sleep(0.01)
        ended.set()

    with pytest.raises(ValueError, match="checks"), Strands() as strands:
        strands.start("mnist", trains)
        raise ValueError("imdb failed its checks")
    assert ended.is_set()
