"""Locks across the processes of one host, one per purpose and tracking store."""

from __future__ import annotations

import fcntl
import hashlib
import tempfile
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path


def _lock_path(tracking_uri: str, purpose: str) -> Path:
    if tracking_uri.startswith("sqlite:///"):
        database = Path(tracking_uri.removeprefix("sqlite:///"))
        return database.with_name(f"{database.name}.{purpose}.lock")
    store = hashlib.sha256(tracking_uri.encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / "keras-variants-locks" / f"{store}.{purpose}.lock"


@contextmanager
def store_lock(tracking_uri: str, purpose: str) -> Iterator[None]:
    """Exclusive, across the processes of this host, for one ``purpose`` on one store.

    The lock file sits next to a SQLite database, else in the temp folder keyed by the
    store's URI. Processes on other hosts are not covered; there the registry gate's re-read
    of the champion right before switching is the guard.
    """
    path = _lock_path(tracking_uri, purpose)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def promotion_lock(tracking_uri: str, model: str) -> AbstractContextManager[None]:
    """Held while one registered model's gate registers, compares and switches aliases, so
    two promotions at once run one after the other and the second sees the first's champion."""
    return store_lock(tracking_uri, f"promote-{model}")
