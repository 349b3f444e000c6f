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
WIDTH_TARGET = 0.10  # the issue's: clean data's interval no wider than this


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
    """The window sizes the estimate was measured at on the ladder, smallest first: clean
    held-out windows of the sizes drawn for the estimate alone are left to
    :func:`clean_width_rows`."""
    check = m.get("false_alarms_measured_on")
    found = {
        size
        for step in m["steps"]
        for size, entry in step["sizes"].items()
        if entry.get("interval") is not None and (step["name"] != check or "alarm_rate" in entry)
    }
    return sorted(found, key=int)


def clean_width_rows(m: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The interval on clean held-out windows (never fitted on) by their number of rows:
    a header and one row per size; no rows for a measurement without them."""
    check = m.get("false_alarms_measured_on")
    step = next((s for s in m["steps"] if s["name"] == check), {"sizes": {}})
    header = ["clean rows", "windows", "intervals held", "mean width", "widest",
              f"every one at most {WIDTH_TARGET:.2f} wide"]  # fmt: skip
    rows = []
    for size, entry in sorted(step["sizes"].items(), key=lambda item: int(item[0])):
        found = entry.get("interval") or {}
        if "widest" not in found:
            continue
        windows = entry.get("estimate_windows", found["estimated"])
        narrow = found["widest"] <= WIDTH_TARGET and found["estimated"] == windows
        rows.append([
            size, str(windows), f"{found['covered']}/{found['estimated']}",
            f"{found['width']:.3f}", f"{found['widest']:.3f}", "yes" if narrow else "no",
        ])  # fmt: skip
    return header, rows


def clean_width_verdict(m: dict[str, Any]) -> str | None:
    """One sentence: from how many clean rows on every interval was at most
    :data:`WIDTH_TARGET` wide and they held as often as claimed; None without the table."""
    _, rows = clean_width_rows(m)
    if not rows:
        return None
    good = [r[5] == "yes" and _held(r[2]) for r in rows]
    first = next((r[0] for i, r in enumerate(rows) if all(good[i:])), None)
    if first is None:
        return (
            f"On clean held-out rows, not every interval was at most {WIDTH_TARGET:.2f} wide "
            f"and held at {LEVEL_WORDS} at the largest size tried ({rows[-1][0]} rows)."
        )
    return (
        f"On clean held-out rows, from {first} rows on (of the sizes tried) every interval "
        f"was at most {WIDTH_TARGET:.2f} wide and they held at least {LEVEL_WORDS} of the time."
    )


def _held(cell: str) -> bool:
    covered, given = (int(v) for v in cell.split("/"))
    return covered >= 0.9 * given - 1e-9


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
