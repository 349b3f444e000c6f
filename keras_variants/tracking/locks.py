"""Locks: across the processes of one host, one per purpose and tracking store; and the
promotion lock, exclusive across machines too.

A lock file sits next to a SQLite database (whose folder the user owns), else in a private
folder of this user's (``$XDG_RUNTIME_DIR`` or the temp folder, mode 0700, refused if another
user owns it or if it is a symbolic link). Lock files are opened without following a
symbolic link, so nobody else can make this tool write through one.

The promotion lock adds a Prefect global concurrency limit of one slot on the Prefect server
this process works with: on the team stack every machine's runs, workers and commands use
the same one, so two gates on two machines never compare and switch aliases at once.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path

from keras_variants.errors import ConfigError, PrefectServerError

# A crashed holder's slot is free again after at most this long; a live holder renews it
# (Prefect's floor for a lease).
PROMOTION_LEASE_SECONDS = 60


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


def _lock_path(tracking_uri: str | None, purpose: str) -> Path:
    """Beside a SQLite database; else in the private folder, per store (``tracking_uri``)
    or, with None, per purpose alone."""
    if tracking_uri is not None and tracking_uri.startswith("sqlite:///"):
        database = Path(tracking_uri.removeprefix("sqlite:///"))
        return database.with_name(f"{database.name}.{purpose}.lock")
    store = hashlib.sha256((tracking_uri or "").encode()).hexdigest()[:16]
    return private_folder() / (f"{store}.{purpose}.lock" if tracking_uri else f"{purpose}.lock")


@contextmanager
def store_lock(tracking_uri: str, purpose: str) -> Iterator[None]:
    """Exclusive, across the processes of this host, for one ``purpose`` on one store."""
    with _held(_lock_path(tracking_uri, purpose)):
        yield


@contextmanager
def _held(path: Path) -> Iterator[None]:
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


def promotion_limit(model: str) -> str:
    """The name of the Prefect global concurrency limit that orders ``model``'s promotions."""
    return f"keras-variants-promote-{model}"


@contextmanager
def promotion_lock(tracking_uri: str, model: str) -> Iterator[None]:
    """Held while one registered model's gate registers, compares and switches aliases, so
    two promotions at once run one after the other and the second sees the first's champion.

    Keyed on the model's name, never on how the store's URI is spelled (``localhost`` and
    ``127.0.0.1`` are one server): on this host a lock file (beside a SQLite database, else
    in the private folder), across machines the Prefect global concurrency limit
    :func:`promotion_limit` on the Prefect server in use, when there is one. Promotions of
    one model to two different tracking servers wait for each other too: they are short.
    """
    local = tracking_uri if tracking_uri.startswith("sqlite:///") else None
    with _held(_lock_path(local, f"promote-{model}")), _prefect_slot(promotion_limit(model)):
        yield


@contextmanager
def _prefect_slot(name: str) -> Iterator[None]:
    """The one slot of the global concurrency limit ``name`` (made, or set back to one
    active slot, first), on the Prefect server this process uses; nothing without one."""
    from prefect.settings import get_current_settings

    api = get_current_settings().api.url
    if not api:
        yield
        return
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import (
        GlobalConcurrencyLimitCreate,
        GlobalConcurrencyLimitUpdate,
    )
    from prefect.concurrency.sync import concurrency
    from prefect.exceptions import ObjectAlreadyExists

    with ExitStack() as held:
        try:
            with get_client(sync_client=True) as client:
                try:
                    client.create_global_concurrency_limit(
                        GlobalConcurrencyLimitCreate(name=name, limit=1)
                    )
                except ObjectAlreadyExists:  # made by an earlier promotion; keep it one slot
                    client.update_global_concurrency_limit(
                        name, GlobalConcurrencyLimitUpdate(limit=1, active=True)
                    )
            held.enter_context(
                concurrency(name, occupy=1, lease_duration=PROMOTION_LEASE_SECONDS, strict=True)
            )
        except Exception as exc:
            raise PrefectServerError(
                f"the Prefect server {api} did not grant the promotion lock '{name}' "
                f"({type(exc).__name__}: {exc}); promotions are exclusive across machines "
                "through it: start it, or check PREFECT_API_URL and PREFECT_API_AUTH_STRING"
            ) from None
        yield
