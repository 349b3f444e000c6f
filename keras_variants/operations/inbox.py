"""A scoring inbox (``variants schedule --score-inbox DIR``): what a scoring run takes, and
where each input goes after.

A run takes every entry (file or folder) that has settled, by moving it into
``DIR/.scoring/``: a rename, so two runs can never take the same file and a restarted
schedule scores it once. Scored, it moves to ``DIR/done/`` (its files in
``DIR/scored/<name>/``); refused, to ``DIR/failed/`` with ``<name>.reason.txt`` beside it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from keras_variants.errors import VariantsError
from keras_variants.operations.watch import INBOX_FOLDERS, Listing, listing

TAKEN = ".scoring"  # entries a run has taken and not finished
SETTLE_S = 2.0  # an entry untouched this long is no longer being written


def settled(entries: Listing, now_ns: int, settle_s: float = SETTLE_S) -> list[str]:
    """Entries whose latest change is at least ``settle_s`` old."""
    return [name for name, (_, mtime) in entries.items() if now_ns - mtime >= settle_s * 1e9]


def free_path(folder: Path, name: str) -> Path:
    """``folder/name``, or ``name-2``, ``name-3``... when a file of that name is there."""
    stem, suffix = (name, "") if "." not in name[1:] else name.rsplit(".", 1)
    suffix = f".{suffix}" if suffix else ""
    candidate, number = folder / name, 1
    while candidate.exists() or candidate.with_name(f"{candidate.name}.reason.txt").exists():
        number += 1
        candidate = folder / f"{stem}-{number}{suffix}"
    return candidate


def take_waiting(inbox: Path) -> list[Path]:
    """Move every settled entry into ``.scoring/`` and return the moved paths (one that
    another run took first is skipped)."""
    taken_dir = inbox / TAKEN
    taken_dir.mkdir(exist_ok=True)
    taken = []
    for name in settled(listing(inbox, INBOX_FOLDERS), time.time_ns()):
        target = taken_dir / name
        try:
            os.rename(inbox / name, target)
        except FileNotFoundError:
            continue
        taken.append(target)
    return taken


def scored_folder(inbox: Path, entry: Path) -> Path:
    """Where an entry's scoring files go: ``scored/<name>/`` (a new folder each time)."""
    (inbox / "scored").mkdir(exist_ok=True)
    return free_path(inbox / "scored", entry.name)


def finish(inbox: Path, entry: Path) -> Path:
    """Move a scored entry to ``done/``."""
    (inbox / "done").mkdir(exist_ok=True)
    target = free_path(inbox / "done", entry.name)
    os.rename(entry, target)
    return target


def fail(inbox: Path, entry: Path, reason: str) -> Path:
    """Move a refused entry to ``failed/`` with ``<name>.reason.txt`` beside it."""
    (inbox / "failed").mkdir(exist_ok=True)
    target = free_path(inbox / "failed", entry.name)
    os.rename(entry, target)
    target.with_name(f"{target.name}.reason.txt").write_text(reason + "\n")
    return target


def put_back(inbox: Path) -> list[str]:
    """Return entries left in ``.scoring/`` by a run that was stopped to the inbox (call
    before serving: no run of this schedule is going on then)."""
    taken_dir = inbox / TAKEN
    if not taken_dir.is_dir():
        return []
    returned = []
    for entry in sorted(taken_dir.iterdir()):
        os.rename(entry, free_path(inbox, entry.name))
        returned.append(entry.name)
    return returned


def reason_for(error: BaseException, entry: Path) -> str:
    """One line for ``<name>.reason.txt`` and the notification: our own errors as they
    are, anything else by type; the taken entry (``.scoring/<name>``, gone by the time
    anyone reads this) named by its name."""
    text = str(error) if isinstance(error, VariantsError) else f"{type(error).__name__}: {error}"
    return " ".join(text.replace(str(entry), entry.name).split())


def not_scored(failed: dict[str, str], scored: int) -> str:
    """Why a scoring run failed: how many inputs were refused, each with its reason."""
    reasons = "; ".join(f"{name}: {why}" for name, why in failed.items())
    return f"{len(failed)} of {len(failed) + scored} inputs not scored (in failed/): {reasons}"


def check_inbox(inbox: Path) -> None:
    from keras_variants.errors import ConfigError

    if not inbox.is_dir():
        raise ConfigError(
            f"--score-inbox {inbox}: no such folder; create it (mkdir -p {inbox}) or pass another"
        )
    if not os.access(inbox, os.W_OK):
        raise ConfigError(f"--score-inbox {inbox}: cannot write there (inputs move to done/)")
