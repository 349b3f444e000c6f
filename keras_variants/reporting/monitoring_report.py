"""The report's "Monitoring" part per data set: how the drift signals and the accuracy
estimate of the version registered by the run did on the known shifts (measured when it
was registered; see :mod:`keras_variants.monitoring.ladders`)."""

from __future__ import annotations

import html
from typing import Any

from mlflow.tracking import MlflowClient

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
    if entry is None:
        return "n/a"
    return f"{entry['alarm_rate']:.0%} of {entry['windows']}"


def summary_lines(m: dict[str, Any]) -> list[str]:
    """Sentences: what was measured, what was chosen, the targets against the measurement."""
    clean = m["steps"][0]["sizes"].get(str(TARGET_SIZE))
    clean_rows = m["steps"][0]["rows"]
    shifts = [s["rows"] for s in m["steps"] if s["name"] not in ("clean", "one class only")]
    shift_rows = max(shifts, default=0)
    cpu = f", {m['cpu_seconds']} s CPU" if "cpu_seconds" in m else ""
    lines = [
        f"{m['version']}: reference from {m['reference_rows']:,} held-out rows (half of them)"
        + (f", {m['reference_sample']:,} of them observed" if "reference_sample" in m else "")
        + f"; {m.get('clean_windows', 40)} clean windows per size drawn without replacement "
        f"from {clean_rows:,} rows of the other half, {m.get('shift_windows', 10)} per size "
        f"and shift from {shift_rows:,} of its rows shifted and sent through the served "
        f"model (no shifted window larger than that: n/a); measured in {m['seconds']} s{cpu}.",
        f"Threshold: family-wise level {m['alpha']} (Bonferroni over {len(m['signals'])} "
        f"signals: each p < {m['alpha'] / len(m['signals']):.2g}), the largest of "
        f"{', '.join(map(str, m['alphas_tried']))} whose clean false-alarm rate at "
        f"{TARGET_SIZE} rows is at most {FALSE_ALARM_TARGET:.0%}.",
    ]
    if clean:
        verdict = "meets" if clean["alarm_rate"] <= FALSE_ALARM_TARGET else "misses"
        lines.append(
            f"False alarms on clean {TARGET_SIZE}-row windows: {clean['alarm_rate']:.0%} "
            f"(target at most {FALSE_ALARM_TARGET:.0%}: {verdict})."
        )
    for step in m["steps"]:
        entry = step["sizes"].get(str(TARGET_SIZE))
        if step["name"] in MUST_DETECT and entry:
            verdict = "meets" if entry["alarm_rate"] >= 0.95 else "misses"
            lines.append(
                f"Detection, {step['name']}, {TARGET_SIZE} rows: {entry['alarm_rate']:.0%} "
                f"(target at least 95%: {verdict})."
            )
    errors = ", ".join(f"{k} {v:.3f}" for k, v in m["estimator_errors"].items())
    lines.append(
        f"Accuracy estimate: {m['estimator']} (mean absolute error on clean data and mild "
        f"shifts: {errors}); expected error on clean windows: "
        + ", ".join(f"{v:.3f} at {k} rows" for k, v in m["expected_error"].items())
        + "."
    )
    lines += [  # as the measurement recorded it: no import of the statistics here
        f"Blind by design: {s['name']} ({s['blind']})." for s in m["steps"] if s.get("blind")
    ]
    return lines


def _rows(m: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    sizes = ["100", "500", "1000"]
    header = ["shift", "rows", *(f"alarms, {s} rows" for s in sizes), "signals firing (500 rows)",
              "true accuracy (500)", "estimate (500)", "error (500)"]  # fmt: skip
    rows = []
    for step in m["steps"]:
        size = "500" if "500" in step["sizes"] else next(iter(step["sizes"]), "500")
        at = step["sizes"].get(size)
        other = "" if size == "500" else f" (at {size} rows)"  # a step with fewer rows
        firing = ""
        truth = estimate = error = "n/a"
        if at:
            firing = ", ".join(f"{k} {v:.0%}" for k, v in at["signal_rates"].items() if v >= 0.5)
            firing = (firing or "none") + other
            if "estimates" in at:
                chosen = at["estimates"][m["estimator"]]
                truth = f"{at['true_accuracy']:.3f}{other}"
                estimate, error = f"{chosen['mean']:.3f}", f"{chosen['error']:.3f}"
        name = step["name"] + (" (false alarms)" if step["name"] == "clean" else "")
        rows.append([name, f"{step['rows']:,}", *(_rate(step["sizes"].get(s)) for s in sizes),
                     firing or "none", truth, estimate, error])  # fmt: skip
    return header, rows


def to_html(m: dict[str, Any]) -> str:
    header, rows = _rows(m)
    parts = ["<h3>Monitoring</h3><ul>"]
    parts += [f"<li>{html.escape(line)}</li>" for line in summary_lines(m)]
    parts.append("</ul><table><tr>")
    parts += [f"<th>{html.escape(h)}</th>" for h in header]
    parts.append("</tr>")
    left = {0, 5}  # the shift's name and the signals firing: text, read from the left
    for row in rows:
        cells = [
            f"<td style='text-align:left'>{html.escape(c)}</td>"
            if i in left
            else f"<td>{html.escape(c)}</td>"
            for i, c in enumerate(row)
        ]
        parts.append("<tr>" + "".join(cells) + "</tr>")
    parts.append("</table>")
    return "".join(parts)


def to_markdown(m: dict[str, Any]) -> list[str]:
    header, rows = _rows(m)
    lines = ["### Monitoring", "", *(f"- {line}" for line in summary_lines(m)), ""]
    lines += ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return [*lines, ""]
