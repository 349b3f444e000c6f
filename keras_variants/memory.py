"""How the process uses memory (glibc): at most two malloc arenas, an allocation policy per
trial (:func:`allocate_for`), the heap's free space handed back after each
(:func:`release_memory`), and no last collections at exit (:func:`freeze_gc`). Elsewhere than
glibc every function here does nothing but collect."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import sys

# glibc's mallopt parameters
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -3, -8
LEAN_MMAP_THRESHOLD = 128 * 1024
# Above the lecture CNN's largest scratch buffer in training (18 MB at 64 rows a batch);
# larger ones (evaluation's 256-row batches) come from mmap and go back when freed.
SCRATCH_MMAP_THRESHOLD, SCRATCH_TRIM = 20 * 2**20, 64 * 2**20


@functools.cache
def _libc() -> ctypes.CDLL | None:
    """glibc, where allocations can be tuned (Linux); None elsewhere."""
    name = ctypes.util.find_library("c")
    if not (sys.platform.startswith("linux") and name):
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.mallopt, libc.malloc_trim  # noqa: B018  (glibc, not musl or another libc)
    except (OSError, AttributeError):
        return None
    return libc


def tune_malloc() -> None:
    """glibc only: at most two malloc arenas, and the lean allocation policy
    (:func:`allocate_for`) until a lane sets one for its trial.

    TensorFlow's threads would each get an arena (up to 8 per core), whose free space
    stays resident: measured alone, two arenas lowered one trial's peak by 50-90 MB
    (BENCHMARKS.md).
    """
    libc = _libc()
    if libc is not None:
        libc.mallopt(_M_ARENA_MAX, 2)
        allocate_for("multi_hot")  # the lean policy


def allocate_for(input_encoding: str) -> None:
    """Set glibc's allocation policy for a trial whose inputs are encoded as
    ``input_encoding`` (lane processes and Dask workers call it before each one; they run
    one at a time).

    Multi-hot inputs (lean): every allocation over 128 KiB from mmap, given back when
    freed. Each step's input batch is tens of MB (512 rows x 10,000 words); kept in the
    heap, such buffers fragment it, and a lane's peak grew by ~200 MB over an IMDb trial.

    Other inputs (scratch): allocations up to 20 MiB from the heap, freed space kept for the
    next step. A convolutional step allocates and frees dozens of scratch buffers of 1-18
    MB; from mmap, each is faulted in page by page and unmapped again, and on a virtual
    machine half of the CNN's CPU time went to the kernel (an epoch 58 s instead of 30 s,
    BENCHMARKS.md). :func:`release_memory` after the trial returns what it kept.
    """
    libc = _libc()
    if libc is None:
        return
    threshold, trim = (
        (LEAN_MMAP_THRESHOLD, LEAN_MMAP_THRESHOLD)
        if input_encoding == "multi_hot"
        else (SCRATCH_MMAP_THRESHOLD, SCRATCH_TRIM)
    )
    libc.mallopt(_M_MMAP_THRESHOLD, threshold)
    libc.mallopt(_M_TRIM_THRESHOLD, trim)


def release_memory() -> None:
    """Collect now, then return the heap's free space to the system (glibc), e.g. after a
    variant, whatever allocation policy it ran under: a Keras model and its compiled
    functions hold reference cycles, ~50 MB a variant, freed only when the collector next
    runs."""
    gc.collect()
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


def freeze_gc() -> None:
    """At exit: everything alive dies with the process. Without this, the interpreter's
    last collections walk millions of TensorFlow/MLflow/Prefect objects (~5 s)."""
    gc.freeze()
