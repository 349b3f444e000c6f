"""The accuracy estimate's coverage on the known shifts, as text: what a version's
measurement (``monitoring.json``, plain JSON) says about its intervals, for the report
and the model card. No statistics library is imported here.

Per shift and window size: how many windows got an estimate (the rest were withheld),
how many of those intervals held the true accuracy, their mean width, all with the shift
left out of the fitting (``clean, held out`` windows are never fitted on).
"""

from __future__ import annotations

from typing import Any

LEVEL_WORDS = "90%"
TARGET_SIZE = "500"


def _cell(entry: dict[str, Any]) -> str:
    found = entry.get("interval")
    windows = entry.get("estimate_windows", entry.get("windows", 0))
    if not found:
        return "-"
    given = found.get("estimated", 0)
    if not given:
        return f"withheld ({windows})"
    if "covered" not in found:  # no true label: a number given where none can be checked
        return f"{given} of {windows} given, no truth"
    held = f"{found['covered']}/{given} held, width {found['width']:.2f}"
    return held + (f"; {windows - given} withheld" if given < windows else "")


def sizes_of(m: dict[str, Any]) -> list[str]:
    """The window sizes the estimate was measured at, smallest first."""
    found = {
        size
        for step in m["steps"]
        for size, entry in step["sizes"].items()
        if entry.get("interval") is not None
    }
    return sorted(found, key=int)


def nearest_size(step: dict[str, Any], size: str, key: str) -> str | None:
    """``size`` when the step has ``key`` there, else its largest smaller size that has."""
    found = [s for s, e in step["sizes"].items() if key in e and int(s) <= int(size)]
    return size if size in found else max(found, key=int, default=None)


def coverage_rows(m: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The coverage table: a header and one row per shift."""
    sizes = sizes_of(m)
    header = ["shift", f"true accuracy ({TARGET_SIZE})", f"estimate ({TARGET_SIZE})",
              f"error ({TARGET_SIZE})", *(f"{s} rows" for s in sizes)]  # fmt: skip
    rows = []
    for step in m["steps"]:
        if not any(step["sizes"].get(s, {}).get("interval") for s in sizes):
            continue
        size = nearest_size(step, TARGET_SIZE, "true_accuracy")
        at = step["sizes"].get(size, {}) if size else {}
        note = "" if size in (None, TARGET_SIZE) else f" (at {size} rows)"
        numbers = [
            f"{at[k]:.3f}{note}" if k in at else "n/a"
            for k in ("true_accuracy", "estimate", "error")
        ]
        rows.append([step["name"], *numbers, *(_cell(step["sizes"].get(s, {})) for s in sizes)])
    return header, rows


def coverage_verdict(m: dict[str, Any]) -> str:
    """One sentence: did every interval hold as often as claimed on the shifts left out?"""
    short = []
    for step in m["steps"]:
        for size, entry in step["sizes"].items():
            found = entry.get("interval") or {}
            if "covered" in found and found["covered"] < 0.9 * found["estimated"] - 1e-9:
                short.append(
                    f"{step['name']} at {size} rows ({found['covered']}/{found['estimated']})"
                )
    if not short:
        return (
            f"On every shift left out of the fitting, the {LEVEL_WORDS} intervals held the "
            "true accuracy at least 90% of the time or no estimate was given."
        )
    return f"Intervals held less often than {LEVEL_WORDS} on: " + "; ".join(short) + "."


def markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + " --- |" * len(header),
        *("| " + " | ".join(row) + " |" for row in rows),
    ]
