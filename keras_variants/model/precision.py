"""The numeric precision a trial trains in: float32, or Keras's mixed_bfloat16 where this
CPU computes bfloat16 natively and the architecture gains from it."""

from __future__ import annotations

from pathlib import Path


def native_bfloat16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX), where Keras's
    mixed_bfloat16 policy pays; elsewhere it would be emulated, and slower."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(requested: str, architecture: str) -> str:
    """``auto`` as what pays on this machine for a model of ``architecture``; an explicit
    choice as it is.

    bfloat16 pays for convolutions only. In a lane (one TensorFlow thread per op) the
    lecture CNN's epochs take about half the time, while the dense IMDb variants took
    ~20% longer and ~30 MB more memory than in float32, and the MNIST dense one no less
    time (BENCHMARKS.md).
    """
    if requested != "auto":
        return requested
    return "mixed_bfloat16" if architecture == "cnn" and native_bfloat16() else "float32"
