"""What one request to a served model may hold and cost, written once.

The model's own limits, which it checks on every ``predict`` however it is served
(:mod:`keras_variants.serving.pyfunc`), and which ``variants score`` checks per row before
sending (:mod:`keras_variants.scoring.inputs`); then the scoring server's defaults
(:class:`Limits`, :mod:`keras_variants.serving.server`), which ``variants serve``'s options
start from. Plain numbers: importing this module costs nothing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

MAX_INPUTS = 10_000  # per request
MAX_TEXT_CHARS = 100_000  # per review (the longest IMDb review has ~14,000)
MAX_IMAGE_CHARS = 2_000_000  # per base64 image
MAX_IMAGE_BYTES = MAX_IMAGE_CHARS // 4 * 3  # the image file whose base64 fills it (1.5 MB)
MAX_MC_SAMPLES = 100  # Monte Carlo dropout passes per input (params mc_samples)

MAX_REQUEST_MIB = 16  # the server's default: largest request body
MAX_COST = 10_000  # the server's default: model passes per request
TIMEOUT_S = 10.0  # the server's default: seconds per request


def cores() -> int:
    """The server's default for predictions at once, and for requests waiting beside them."""
    return os.cpu_count() or 1


@dataclass(frozen=True)
class Limits:
    """What one request to the scoring server may take. ``max_cost`` counts model passes:
    inputs x (1 + mc_samples); ``timeout_s`` covers reading the body, waiting for a worker
    and the prediction. ``max_concurrent`` predictions run at once; ``max_queue`` more
    requests may be read and wait for a worker (first come, first served), so that a worker
    that finishes starts the next prediction at once; beyond both, 503 at once."""

    max_request_bytes: int = MAX_REQUEST_MIB * 2**20
    max_cost: int = MAX_COST
    max_concurrent: int = field(default_factory=cores)
    max_queue: int = field(default_factory=cores)
    timeout_s: float = TIMEOUT_S


MC_SAMPLES_RULE = f'"mc_samples" must be a whole number from 0 to {MAX_MC_SAMPLES}'


def mc_samples_allowed(value: object) -> bool:
    """Whether ``value`` is an ``mc_samples`` a request may ask for (:data:`MC_SAMPLES_RULE`):
    a JSON whole number (not a boolean) from 0 (off) to :data:`MAX_MC_SAMPLES`."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_MC_SAMPLES
