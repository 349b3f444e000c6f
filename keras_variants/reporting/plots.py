"""The report's figures as files and pages need them: matplotlib without a display, PNG
bytes, data URIs."""

from __future__ import annotations

import base64
import io
from typing import Any


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
