"""What every benchmark does with its figures: replace its own section of BENCHMARKS.md (between
its two markers), or add the section at the end the first time."""

from __future__ import annotations

from pathlib import Path


def write_section(path: Path, begin: str, end: str, text: str) -> None:
    """``text`` between the markers ``begin`` and ``end`` in ``path``; the rest kept."""
    previous = path.read_text() if path.is_file() else ""
    if begin in previous and end in previous:
        head, rest = previous.split(begin, 1)
        updated = head + begin + "\n" + text + "\n" + end + rest.split(end, 1)[1]
    else:
        updated = previous.rstrip() + f"\n\n{begin}\n{text}\n{end}\n"
    path.write_text(updated)
