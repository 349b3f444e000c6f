"""Checks of what the user asked for that answer at once: before TensorFlow is imported or
any server starts, so a mistake costs a second, not a minute.

Each raises a :class:`~keras_variants.errors.VariantsError` saying what is wrong, where, and
what to do. The data files themselves are checked again, in depth, by ingestion and
validation.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlsplit

from keras_variants.config.variants import VariantConfig
from keras_variants.data.datasets import (
    IMDB_FILE,
    IMDB_WORD_INDEX_FILE,
    KERAS_ORIGIN,
    MNIST_FILE,
    SPLIT_KEYS,
)
from keras_variants.data.npz import read_npz
from keras_variants.errors import DataError, TrackingStoreError

DATA_FILES = {"mnist": MNIST_FILE, "imdb": IMDB_FILE}  # the file each data set needs
DOWNLOAD_HOST = KERAS_ORIGIN.split("/")[2]


def check_data_dir(
    data_dir: Path | None,
    variants: Iterable[VariantConfig],
    source: str = "--data-dir",
    served: bool = True,
    typed: Path | str | None = None,
) -> None:
    """The data folder exists, is not empty, and holds a readable ``.npz`` for every data
    set the ``variants`` need, and, when the variants are to be trained or scored as
    ``served`` models, for IMDb the word index the served model reads texts with.
    ``source`` names where the folder came from, and messages name the folder as ``typed``
    (what the user wrote) when given.

    Without a folder the files come from Keras's download: then the cache has them or the
    download host resolves.
    """
    needed: dict[str, list[str]] = {}
    for variant in variants:
        needed.setdefault(DATA_FILES[variant.dataset], []).append(variant.name)
    files = " and ".join(needed)
    use_a_folder = f"Pass the folder holding {files} (Keras layout) with --data-dir DIR"
    if data_dir is None:
        _check_download(list(needed), use_a_folder + " or set VARIANTS_DATA_DIR.")
        return
    folder = Path(data_dir)
    shown = str(typed) if typed is not None else str(folder)
    if not folder.exists():
        raise DataError(shown, None, f"data folder not found ({source})", use_a_folder)
    if not folder.is_dir():
        raise DataError(shown, None, f"not a folder ({source})", use_a_folder)
    try:
        present = sorted(p.name for p in folder.iterdir())
    except OSError as exc:
        raise DataError(shown, None, f"cannot read the data folder: {exc.strerror}") from exc
    if not present:
        raise DataError(shown, None, f"the data folder is empty ({source})", use_a_folder)
    for file, names in needed.items():
        if file not in present:
            holds = ", ".join(present[:4]) + (", ..." if len(present) > 4 else "")
            raise DataError(
                shown,
                None,
                f"no {file} in the data folder ({source}; it holds {holds}); "
                f"{', '.join(names)} need{'s' if len(names) == 1 else ''} it",
                f"Copy {file} there, or choose other variants with --variants",
            )
        read_npz(folder / file, SPLIT_KEYS)  # opens as a zip with every split: cheap
    imdb = needed.get(IMDB_FILE)
    if imdb and served and IMDB_WORD_INDEX_FILE not in present:
        # The served IMDb model takes review texts; without the index its word ids cannot be
        # mapped to words, so the gate would fail after every variant had trained.
        raise DataError(
            shown,
            None,
            f"no {IMDB_WORD_INDEX_FILE} beside {IMDB_FILE} ({source}); the served IMDb model "
            f"needs it to read review texts, and {', '.join(imdb)} "
            f"{'is an IMDb variant' if len(imdb) == 1 else 'are IMDb variants'}",
            f"Copy {IMDB_WORD_INDEX_FILE} (the one {IMDB_FILE} was made with) there, or choose "
            "MNIST variants only with --variants",
        )


def _check_download(files: list[str], hint: str) -> None:
    cache = [Path(os.environ.get("KERAS_HOME", "~/.keras")).expanduser(), Path("/tmp/.keras")]
    if all(any((c / "datasets" / f).is_file() for c in cache) for f in files):
        return
    failure = _resolve_failure(DOWNLOAD_HOST, timeout=3.0)
    if failure:
        raise DataError(
            "no data folder given",
            None,
            f"downloading {' and '.join(files)} from {DOWNLOAD_HOST} is not possible ({failure})",
            hint,
        )


def _resolve_failure(host: str, timeout: float) -> str | None:
    """Why ``host`` does not resolve, or None if it does (a lookup without internet fails
    at once; one that hangs counts as failed after ``timeout`` seconds)."""
    outcome: list[str | None] = []

    def look_up() -> None:
        try:
            socket.getaddrinfo(host, 443)
            outcome.append(None)
        except OSError as exc:
            outcome.append(exc.strerror or str(exc))

    thread = threading.Thread(target=look_up, daemon=True)
    thread.start()
    thread.join(timeout)
    return outcome[0] if outcome else f"no answer from DNS within {timeout:.0f} s"


def check_store_reachable(tracking_uri: str, timeout: float = 3.0) -> None:
    """A tracking server must answer a connection before anything starts (MLflow's own
    retries, which ride out a short outage during a run, would take a minute to say so)."""
    from keras_variants.operations.notify import unreachable

    if urlsplit(tracking_uri).scheme not in ("http", "https"):
        return
    reason = unreachable(tracking_uri, timeout)
    if reason is not None:
        raise TrackingStoreError(
            f"MLflow tracking store {tracking_uri} is unavailable (nothing answers there: "
            f"{reason}). Start it, or pass --tracking-uri / MLFLOW_TRACKING_URI to one that "
            "runs; nothing was started"
        )


def check_store_exists(tracking_uri: str) -> None:
    """A tracking server must answer; a local SQLite store must exist already for commands
    that only read it."""
    check_store_reachable(tracking_uri)
    if not tracking_uri.startswith("sqlite:///"):
        return
    path = Path(tracking_uri.removeprefix("sqlite:///"))
    if not path.is_file():
        raise TrackingStoreError(
            f"no MLflow store at {path}: run 'variants run' here first, or point "
            "--tracking-uri (or MLFLOW_TRACKING_URI) at the store"
        )
