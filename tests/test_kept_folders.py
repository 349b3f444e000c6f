"""Pruning the kept folders (the read cache, the report's figures): the recent stay, stale
half-written ones go."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(
    ("kept", "unused_s", "left"),
    [
        (2, 0.0, ["new", "mid"]),  # beyond the two most recent, all removed
        (2, 4 * 3600, ["new", "mid", "old"]),  # only those unused for four hours
        (5, 0.0, ["new", "mid", "old", "oldest"]),
    ],
)
def test_pruning_kept_folders_keeps_the_recent_and_removes_stale_half_written_ones(
    tmp_path, kept: int, unused_s: float, left: list[str]
) -> None:
    import os
    import time

    from keras_variants.kept_folders import prune

    now = time.time()
    ages = {"new": 0, "mid": 60, "old": 3 * 3600, "oldest": 3 * 24 * 3600,
            ".fresh.1": 60, ".stale.2": 2 * 3600}  # fmt: skip
    for name, age in ages.items():
        (tmp_path / name).mkdir()
        os.utime(tmp_path / name, (now - age, now - age))
    prune(tmp_path, kept, unused_s)
    remaining = sorted(p.name for p in tmp_path.iterdir())
    assert remaining == sorted([*left, ".fresh.1"])
