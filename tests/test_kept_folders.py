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


def test_threads_keeping_one_entry_at_once_leave_it_whole(tmp_path) -> None:
    """Two threads of one process that both miss the cache write the same entry: each in
    a folder of its own, so the entry the first kept is whole while the other is still
    writing (it opened its file, truncating it, before the first one's was renamed)."""
    import threading

    from keras_variants.kept_folders import keep

    entry, payload = tmp_path / "entry", "x" * 100_000
    written, opened, first_kept = threading.Event(), threading.Event(), threading.Event()

    def fast(folder) -> None:
        (folder / "meta.json").write_text(payload)
        written.set()
        opened.wait(30)  # the other thread opens its file before this one is renamed

    def slow(folder) -> None:
        written.wait(30)
        with (folder / "meta.json").open("w") as file:
            opened.set()
            first_kept.wait(30)
            file.write(payload)

    lagging = threading.Thread(target=keep, args=(entry, slow))
    lagging.start()
    keep(entry, fast)
    try:
        assert (entry / "meta.json").read_text() == payload  # not the lagging one's empty file
    finally:
        first_kept.set()
        lagging.join()
    assert (entry / "meta.json").read_text() == payload
    assert [p.name for p in tmp_path.iterdir()] == ["entry"]  # the other's folder removed
