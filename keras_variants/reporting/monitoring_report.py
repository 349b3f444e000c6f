"""The report's "Monitoring" part per data set: how the drift signals and the accuracy
estimate of the version registered by the run did on the known shifts (measured when it
was registered; see :mod:`keras_variants.monitoring.ladders`)."""

from __future__ import annotations

import html
from typing import Any

from mlflow.tracking import MlflowClient

from keras_variants.monitoring.coverage import nearest_size
from keras_variants.registry.versions import REGISTERED_MODELS

# As in keras_variants.monitoring.ladders, which is imported on use (SciPy, pandas): the
# command line starts without them.
FALSE_ALARM_TARGET, TARGET_SIZE = 0.05, 500

DATASETS = {name: dataset for dataset, name in REGISTERED_MODELS.items()}
# The detection targets: these shifts flagged in at least 95% of 500-row windows.
MUST_DETECT = (
    "rotated 45°", "rotated 60°", "rotated 90°", "clothing-like images", "cut to 20 words",
    "one class only",
)  # fmt: skip


def monitoring_for(client: MlflowClient, run_ids: set[str]) -> dict[str, dict[str, Any]]:
    """Per data set, the measurement of the newest version registered from ``run_ids``,
    with ``version`` added."""
    from keras_variants.monitoring.stored import PROFILE_TAG, load_measurement

    out: dict[str, dict[str, Any]] = {}
    for name, dataset in DATASETS.items():
        versions = [
            v
            for v in client.search_model_versions(f"name = '{name}'")
            if v.tags.get("run_id") in run_ids and PROFILE_TAG in v.tags
        ]
        if versions:
            newest = max(versions, key=lambda v: int(v.version))
            measurement = load_measurement(client, newest)
            if measurement:
                out[dataset] = {**measurement, "version": f"{name} v{newest.version}"}
    return out


def _rate(entry: dict[str, Any] | None) -> str:
    if entry is None or "alarm_rate" not in entry:
        return "n/a"
    return f"{entry['alarm_rate']:.0%} of {entry['windows']}"


def _step(m: dict[str, Any], name: str) -> dict[str, Any] | None:
    return next((s for s in m["steps"] if s["name"] == name), None)


def summary_lines(m: dict[str, Any]) -> list[str]:
    """Sentences: what was measured, what was chosen, the targets against the measurement."""
    fit = m.get("alpha_chosen_on", "clean")
    check = m.get("false_alarms_measured_on", "clean")
    clean_rows = m["steps"][0]["rows"]
    shifts = [s["rows"] for s in m["steps"] if s["name"] not in (fit, check, "one class only")]
    shift_rows = max(shifts, default=0)
    cpu = f", {m['cpu_seconds']} s CPU" if "cpu_seconds" in m else ""
    sets = "two disjoint sets of" if fit != check else ""
    lines = [
        f"{m['version']}: reference from {m['reference_rows']:,} held-out rows (half of them)"
        + (f", {m['reference_sample']:,} of them observed" if "reference_sample" in m else "")
        + f"; {m.get('clean_windows', 40)} clean windows per size drawn without replacement "
        f"from {sets} {clean_rows:,} rows of the other half, {m.get('shift_windows', 10)} per "
        f"size and shift from {shift_rows:,} of its rows shifted and sent through the served "
        f"model (no shifted window larger than that: n/a); measured in {m['seconds']} s{cpu}.",
        f"Threshold: family-wise level {m['alpha']} (Bonferroni over {len(m['signals'])} "
        f"signals: each p < {m['alpha'] / len(m['signals']):.2g}), the largest of "
        f"{', '.join(map(str, m['alphas_tried']))} "
        + _threshold_rule(m, fit)
        + (" at every window size." if fit != check else f" at {TARGET_SIZE} rows."),
    ]
    held_out = _step(m, check)
    if held_out:
        rates = {
            size: e["alarm_rate"] for size, e in held_out["sizes"].items() if "alarm_rate" in e
        }
        if rates:
            verdict = "meets" if max(rates.values()) <= FALSE_ALARM_TARGET else "misses"
            where = "windows not used to choose it" if fit != check else "the same windows"
            lines.append(
                f"False alarms on clean windows ({where}, '{check}'): "
                + ", ".join(f"{r:.0%} at {size} rows" for size, r in rates.items())
                + f" (target at most {FALSE_ALARM_TARGET:.0%}: {verdict})."
            )
    for step in m["steps"]:
        entry = step["sizes"].get(str(TARGET_SIZE))
        if step["name"] in MUST_DETECT and entry and "alarm_rate" in entry:
            verdict = "meets" if entry["alarm_rate"] >= 0.95 else "misses"
            lines.append(
                f"Detection, {step['name']}, {TARGET_SIZE} rows: {entry['alarm_rate']:.0%} "
                f"(target at least 95%: {verdict})."
            )
    lines += _estimate_lines(m)
    lines += [  # as the measurement recorded it: no import of the statistics here
        f"Blind by design: {s['name']} ({s['blind']})." for s in m["steps"] if s.get("blind")
    ]
    return lines


def _threshold_rule(m: dict[str, Any], fit: str) -> str:
    windows, allowed = m.get("clean_windows", 40), m.get("alarms_allowed")
    if allowed is None:  # measured before the conformal rule
        return f"whose false-alarm rate on the '{fit}' windows is at most {FALSE_ALARM_TARGET:.0%}"
    return (
        f"that raised at most {allowed} alarm{'s' if allowed != 1 else ''} in the {windows} "
        f"'{fit}' windows, so that a new clean window alarms with probability at most "
        f"{FALSE_ALARM_TARGET:.0%} ((k + 1) / (n + 1) = {(allowed + 1) / (windows + 1):.1%}, "
        "the split-conformal bound)"
    )


def _estimate_lines(m: dict[str, Any]) -> list[str]:
    from keras_variants.monitoring.coverage import clean_width_verdict, coverage_verdict

    tried = m.get("estimators_tried")
    if not tried:  # measured before intervals were calibrated
        return ["Accuracy estimate: no interval was calibrated for this version."]
    figures = ", ".join(
        f"{name} held on {t['held']} of {t['pairs']}, mean error {t['error']:.3f}, "
        f"mean width {t['width']:.2f}"
        for name, t in tried.items()
    )
    up_to = ", ".join(f"{v} ({k} rows)" for k, v in m.get("checked_up_to", {}).items())
    point = m.get("point_estimator") or m["estimator"]
    printed = (
        f"; the number printed inside its interval is {point}'s, the smallest mean error on "
        "the shifts (the interval's own when outside it)"
        if point != m["estimator"]
        else ""
    )
    return [
        f"Accuracy estimate: {m['estimator']}, the estimator whose intervals held on the most "
        f"(shift, window size) pairs left out of the fitting, the closest to the truth among "
        f"those ({figures}){printed}; where the "
        "predicted classes drift, fitted again on the held-out rows re-mixed to the class "
        "mix black-box shift estimation finds.",
        f"Interval: {m['level']:.0%}, the sampling spread plus the estimator's error on the "
        "known shifts as far from the reference (beyond the distance clean rows lie at by "
        "sampling alone); no estimate beyond the furthest shift "
        f"checked ({up_to}) or below the smallest window size.",
        coverage_verdict(m),
        *filter(None, [clean_width_verdict(m)]),
    ]


def _rows(m: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    sizes = ["100", "500", "1000"]
    header = ["shift", "rows", *(f"alarms, {s} rows" for s in sizes), "signals firing (500 rows)"]
    rows = []
    for step in m["steps"]:
        size = nearest_size(step, "500", "signal_rates") or "500"
        at = step["sizes"].get(size)
        other = "" if size == "500" else f" (at {size} rows)"  # a step with fewer rows
        firing = ""
        if at and "signal_rates" in at:
            firing = ", ".join(f"{k} {v:.0%}" for k, v in at["signal_rates"].items() if v >= 0.5)
            firing = (firing or "none") + other
        name = step["name"] + (" (false alarms)" if step["name"].startswith("clean") else "")
        rows.append([name, f"{step['rows']:,}", *(_rate(step["sizes"].get(s)) for s in sizes),
                     firing or "none"])  # fmt: skip
    return header, rows


def _html_table(header: list[str], rows: list[list[str]], left: set[int]) -> list[str]:
    parts = ["<table><tr>", *(f"<th>{html.escape(h)}</th>" for h in header), "</tr>"]
    for row in rows:
        cells = [
            f"<td style='text-align:left'>{html.escape(c)}</td>"
            if i in left
            else f"<td>{html.escape(c)}</td>"
            for i, c in enumerate(row)
        ]
        parts.append("<tr>" + "".join(cells) + "</tr>")
    parts.append("</table>")
    return parts


CLEAN_WIDTHS = "The interval on clean held-out rows (never fitted on), by their number"


def to_html(m: dict[str, Any]) -> str:
    from keras_variants.monitoring.coverage import clean_width_rows, coverage_rows

    parts = ["<h3>Monitoring</h3><ul>"]
    parts += [f"<li>{html.escape(line)}</li>" for line in summary_lines(m)]
    parts.append("</ul>")
    header, rows = _rows(m)
    parts += _html_table(header, rows, {0, 5})  # names and signals: read from the left
    header, rows = coverage_rows(m)
    if rows:
        parts.append(
            "<h4>The accuracy estimate's 90% interval on shifts left out of its fitting</h4>"
        )
        parts += _html_table(header, rows, {0})
    header, rows = clean_width_rows(m)
    if rows:
        parts.append(f"<h4>{html.escape(CLEAN_WIDTHS)}</h4>")
        parts += _html_table(header, rows, set())
    return "".join(parts)


def to_markdown(m: dict[str, Any]) -> list[str]:
    from keras_variants.monitoring.coverage import clean_width_rows, coverage_rows, markdown_table

    header, rows = _rows(m)
    lines = ["### Monitoring", "", *(f"- {line}" for line in summary_lines(m)), ""]
    lines += markdown_table(header, rows)
    header, rows = coverage_rows(m)
    if rows:
        lines += ["", "The accuracy estimate's 90% interval on shifts left out of its fitting:", ""]
        lines += markdown_table(header, rows)
    header, rows = clean_width_rows(m)
    if rows:
        lines += ["", f"{CLEAN_WIDTHS}:", ""]
        lines += markdown_table(header, rows)
    return [*lines, ""]
