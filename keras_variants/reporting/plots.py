"""The report's figures as files and pages need them: matplotlib without a display, PNG
bytes, data URIs; and a cache of drawn figures, so a report whose curves did not change
(an unchanged rerun, ``variants report`` again) does not draw them again."""

from __future__ import annotations

import base64
import hashlib
import io
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import numpy as np

from keras_variants.code_digest import code_digest
from keras_variants.kept_folders import keep, prune

CACHED_DRAWINGS = 64  # the most recent sets of figures kept; older ones are removed
_cache: ContextVar[Path | None] = ContextVar("figure_cache", default=None)


@contextmanager
def figure_cache(folder: Path) -> Iterator[None]:
    """Within it, :func:`cached` keeps drawn figures in ``folder``."""
    token = _cache.set(folder)
    try:
        yield
    finally:
        _cache.reset(token)


def cached(module: str, content: object, draw: Callable[[], dict[str, bytes]]) -> dict[str, bytes]:
    """``draw()``'s figures, or the ones drawn before from the same ``content`` (everything
    the drawing reads, as JSON) by the same code (``module``'s import closure)."""
    folder = _cache.get()
    if folder is None:
        return draw()
    key = hashlib.sha256(json.dumps(content, sort_keys=True, default=_plain).encode())
    key.update(code_digest(module).encode())
    entry = folder / key.hexdigest()
    if entry.is_dir():
        entry.touch()  # recently used: kept longest
        return {path.name: path.read_bytes() for path in sorted(entry.iterdir())}
    figures = draw()

    def write(partial: Path) -> None:
        for name, data in figures.items():
            (partial / name).write_bytes(data)

    keep(entry, write)  # if it cannot be kept, drawn again next time
    prune(folder, CACHED_DRAWINGS)
    return figures


def _plain(value: object) -> object:
    if isinstance(value, np.ndarray | np.generic):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not part of a figure's content")


def pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend (no display), imported when first needed."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    return plt


def png(fig: Any) -> bytes:
    """The figure as PNG bytes (laid out tight, 90 dpi); the figure is closed."""
    plt = pyplot()
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return buffer.getvalue()


def png_uri(data: bytes) -> str:
    """A data URI, so a page or a Prefect artifact embeds the image itself."""
    return "data:image/png;base64," + base64.b64encode(data).decode()
