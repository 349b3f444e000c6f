"""Watching folders for ``variants schedule``: the data folder (a file with a new SHA-256)
and a scoring inbox (a file or folder that landed), by polling.

A file still being written is not picked up half-way: an entry counts once its size and
modification time are the same at two looks ``interval`` seconds apart (:func:`stable`).
The rules are pure functions over listings; :class:`Watcher` is the thread that looks.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

# name -> (size in bytes, latest modification time in ns); a folder sums its files.
Listing = dict[str, tuple[int, int]]

INBOX_FOLDERS = ("done", "failed", "scored")  # what the scoring writes, never an input
log = logging.getLogger("keras_variants.schedule")


def listing(folder: Path, skip: Iterable[str] = ()) -> Listing:
    """The entries of ``folder`` (not hidden ones, not ``skip``) with size and mtime."""
    skipped = set(skip)
    entries: Listing = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or path.name in skipped:
            continue
        try:
            if path.is_dir():
                stats = [p.stat() for p in path.rglob("*") if p.is_file()]
                here = path.stat()
                entries[path.name] = (
                    sum(s.st_size for s in stats),
                    max([here.st_mtime_ns, *(s.st_mtime_ns for s in stats)]),
                )
            else:
                stat = path.stat()
                entries[path.name] = (stat.st_size, stat.st_mtime_ns)
        except FileNotFoundError:  # moved away while we looked
            continue
    return entries


def stable(previous: Listing, current: Listing) -> list[str]:
    """The entries unchanged between two looks: no longer being written."""
    return [name for name, seen in current.items() if previous.get(name) == seen]


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def changed(known: dict[str, str], digests: dict[str, str]) -> list[str]:
    """Files whose digest differs from the one known (a new file counts as changed)."""
    return [name for name, digest in digests.items() if known.get(name) != digest]


def new_arrivals(announced: Listing, current: Listing, ready: Iterable[str]) -> list[str]:
    """Ready entries not announced as they are now: each arrival is announced once (a new
    file under a name already scored is a new arrival)."""
    return [name for name in ready if announced.get(name) != current[name]]


class Watcher(threading.Thread):
    """Looks at a folder every ``interval`` seconds and calls ``look`` with its listing and
    the previous one; stops when :meth:`stop` is called. A failing look is logged, once
    per distinct message, and the next look goes on."""

    def __init__(
        self, name: str, folder: Path, look: Callable[[Listing, Listing], None], interval: float
    ) -> None:
        super().__init__(name=name, daemon=True)
        self.folder, self._look, self.interval = folder, look, interval
        self._stopped = threading.Event()
        self._last_error: str | None = None

    def run(self) -> None:
        previous: Listing = {}
        while not self._stopped.is_set():
            try:
                current = listing(self.folder, INBOX_FOLDERS)
                self._look(previous, current)
                previous = current
            except Exception as exc:  # a watcher keeps watching
                message = f"{self.name}: {exc}"
                if message != self._last_error:
                    log.warning(message)
                    self._last_error = message
            self._stopped.wait(self.interval)

    def stop(self) -> None:
        self._stopped.set()


def data_watcher(
    folder: Path, interval: float, emit: Callable[[list[str], dict[str, str]], None]
) -> Watcher:
    """Calls ``emit(files, digests)`` when data files in ``folder`` get a new SHA-256; the
    digests seen at the first look are the starting point."""
    known: dict[str, str] = {}
    hashed: Listing = {}
    first = [True]

    def look(previous: Listing, current: Listing) -> None:
        digests = {}
        for name in stable(previous, current):
            if hashed.get(name) != current[name] and (folder / name).is_file():
                digests[name] = sha256(folder / name)
                hashed[name] = current[name]
        if first[0]:
            if previous or not current:  # the baseline is the first stable look
                first[0] = False
            known.update(digests)
            return
        news = changed(known, digests)
        known.update(digests)
        if news:
            emit(news, {name: digests[name] for name in news})

    return Watcher("data watcher", folder, look, interval)


def inbox_watcher(folder: Path, interval: float, emit: Callable[[list[str]], None]) -> Watcher:
    """Calls ``emit(names)`` once for entries that landed in ``folder`` and stopped changing."""
    announced: Listing = {}

    def look(previous: Listing, current: Listing) -> None:
        for name in set(announced) - set(current):  # gone (scored)
            del announced[name]
        news = new_arrivals(announced, current, stable(previous, current))
        if news:
            emit(news)
            announced.update({name: current[name] for name in news})

    return Watcher("inbox watcher", folder, look, interval)
