"""Folders of files kept by a key (the data sets read before, the report's drawn figures):
each entry written whole into a temporary folder and renamed, so that no reader sees half
of one, and the least recently used removed. Several processes, and several threads of one,
may share the parent: each writer has a temporary folder of its own."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

PARTIAL_S = 3600  # a half-written entry this old was left by a process that died


def keep(entry: Path, write: Callable[[Path], None]) -> None:
    """``write(folder)`` into a new temporary folder, renamed to ``entry`` when complete;
    nothing kept if it fails (no room) or ``entry`` was kept meanwhile by another writer."""
    partial = None
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        partial = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", dir=entry.parent))
        write(partial)
        partial.rename(entry)
    except OSError:
        if partial is not None:
            shutil.rmtree(partial, ignore_errors=True)


def prune(folder: Path, kept: int, unused_s: float = 0.0) -> None:
    """Beyond the ``kept`` most recently used entries of ``folder`` (an entry is touched
    when used), remove those unused for ``unused_s``; and half-written ones left behind."""
    if not folder.is_dir():
        return
    now = time.time()
    ages = {p: now - _mtime(p, now) for p in folder.iterdir()}
    partial = [p for p, age in ages.items() if p.name.startswith(".") and age > PARTIAL_S]
    entries = sorted((p for p in ages if not p.name.startswith(".")), key=ages.__getitem__)
    for old in partial + [p for p in entries[kept:] if ages[p] > unused_s]:
        shutil.rmtree(old, ignore_errors=True)


def _mtime(path: Path, now: float) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:  # removed meanwhile by another process
        return now
