"""Locks across the processes of one host, one per purpose and tracking store.

A lock file sits next to a SQLite database (whose folder the user owns), else in a private
folder of this user's (``$XDG_RUNTIME_DIR`` or the temp folder, mode 0700, refused if another
user owns it or if it is a symbolic link). Lock files are opened without following a
symbolic link, so nobody else can make this tool write through one.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from pathlib import Path

from keras_variants.errors import ConfigError


def private_folder() -> Path:
    """This user's own folder for lock files, made with mode 0700; ConfigError if the path
    is a symbolic link, not a folder, or owned by another user, or open to others."""
    base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    folder = Path(base) / f"keras-variants-{os.getuid()}"
    with suppress(FileExistsError):
        folder.mkdir(mode=0o700)
    info = os.lstat(folder)
    if (
        not stat.S_ISDIR(info.st_mode)
        or info.st_uid != os.getuid()
        or stat.S_IMODE(info.st_mode) & 0o077
    ):
        raise ConfigError(
            f"{folder}: not a private folder of this user's (a link, another owner or open "
            "to others); remove it, or set XDG_RUNTIME_DIR to a folder only you can write"
        )
    return folder


def _lock_path(tracking_uri: str, purpose: str) -> Path:
    if tracking_uri.startswith("sqlite:///"):
        database = Path(tracking_uri.removeprefix("sqlite:///"))
        return database.with_name(f"{database.name}.{purpose}.lock")
    store = hashlib.sha256(tracking_uri.encode()).hexdigest()[:16]
    return private_folder() / f"{store}.{purpose}.lock"


@contextmanager
def store_lock(tracking_uri: str, purpose: str) -> Iterator[None]:
    """Exclusive, across the processes of this host, for one ``purpose`` on one store.
    Processes on other hosts are not covered; there the registry gate's re-read of the
    champion right before switching is the guard."""
    path = _lock_path(tracking_uri, purpose)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        if not path.is_symlink():
            raise
        raise ConfigError(
            f"{path}: the lock file is a symbolic link; remove it (this tool never writes "
            "through a link)"
        ) from exc
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(descriptor, fcntl.LOCK_UN)
    finally:
        os.close(descriptor)


def promotion_lock(tracking_uri: str, model: str) -> AbstractContextManager[None]:
    """Held while one registered model's gate registers, compares and switches aliases, so
    two promotions at once run one after the other and the second sees the first's champion."""
    return store_lock(tracking_uri, f"promote-{model}")
