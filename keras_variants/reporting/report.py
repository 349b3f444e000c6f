"""The comparison report: tables, the lecture's plots and findings stated from the numbers.

Built only from a :class:`~keras_variants.tracking.records.PipelineRecord` read back from
MLflow, so it can be rebuilt for any past run.
Rendering is pure; writing files is :func:`write_report`.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from keras_variants.reporting import calibration_report, monitoring_report
from keras_variants.reporting.calibration_report import CalibrationSection, calibration_sections
from keras_variants.reporting.findings import (
    Group,
    findings_for,
    groups,
    lecture_verdicts,
    sweep_findings,
    verdict_row,
)
from keras_variants.reporting.plots import png as _png
from keras_variants.reporting.plots import png_uri as _png_uri
from keras_variants.reporting.plots import pyplot
from keras_variants.reporting.progress import MLFLOW_UI
from keras_variants.tracking.records import PipelineRecord, VariantRecord

# Where the README's `mlflow ui ... --port 5000` serves the UI; a tracking server serves its own.
OVERFIT_GAP = "val_loss_minus_train_loss"
COLUMNS = [
    ("variant", "variant"),
    ("parameters", "parameters"),
    ("test accuracy", "test/accuracy"),
    ("test loss", "test/loss"),
    ("test AUC", "test/auc"),
    ("lowest val loss at epoch", "validation_loss_min_epoch"),
    ("val loss - train loss (last epoch; > 0: overfitting)", OVERFIT_GAP),
    ("training s", "training_seconds"),
]


@dataclass
class Report:
    title: str
    tables: dict[str, list[dict[str, object]]]  # data set -> one row per variant
    findings: dict[str, list[str]]
    figures: dict[str, bytes]  # file name -> PNG bytes
    decisions: list[str] = field(default_factory=list)
    about: dict[str, str] = field(default_factory=dict)  # "date", "profile", "seed" -> text
    fingerprints: dict[str, str] = field(default_factory=dict)  # data file -> SHA-256
    runs: dict[str, str] = field(default_factory=dict)  # data set -> MLflow UI page of its run
    claims: list[dict[str, str]] = field(default_factory=list)  # findings.verdict_row
    sweeps: list[str] = field(default_factory=list)  # a sentence per swept variant
    calibration: dict[str, CalibrationSection] = field(default_factory=dict)  # by data set
    monitoring: dict[str, dict] = field(default_factory=dict)  # by data set: measurement


CLAIMS_INTRO = (
    "Each claim is decided by the mean difference of its measure between two variants, "
    "paired by seed, and the 95% t-interval of that mean: holds when the interval lies on "
    "the claimed side of zero, does not hold when it lies on the other side (or the "
    "variants never differ), inconclusive when it spans zero or fewer than 3 seeds pair up."
)
SPREAD = "spread"  # row key: measure -> standard deviation across seeds
CLAIM_COLUMNS = [
    ("claim", "claim"),
    ("measure (paired by seed)", "measure"),
    ("mean difference", "difference"),
    ("95% interval", "interval"),
    ("seeds", "seeds"),
    ("verdict", "verdict"),
    ("why", "why"),
]
NARROW_CLAIM_COLUMNS = [  # the Markdown table: a claim's number; the rest below the table
    ("claim", "number"),
    *(c for c in CLAIM_COLUMNS if c[1] in ("difference", "interval", "seeds", "verdict")),
]


def variant_row(record: VariantRecord, group: Group | None = None) -> dict[str, object]:
    """A table row; for a group of seeds, ``record`` is their mean and the row carries the
    standard deviations and the number of seeds."""
    curves = record.curves
    gap = curves["val/loss"][-1] - curves["train/loss"][-1] if curves["val/loss"] else None
    row: dict[str, object] = {}
    if group is not None and group.seeds > 1:
        spread = {k: float(np.asarray(v)) for k, v in group.spread.items() if np.ndim(v) == 0}
        gaps = [r.curves["val/loss"][-1] - r.curves["train/loss"][-1] for r in group.runs]
        spread[OVERFIT_GAP] = float(np.std(gaps, ddof=1))
        row = {SPREAD: spread, "seeds": group.seeds}
    return row | {
        "variant": record.variant,
        "parameters": int(record.params.get("parameter_count", 0)),
        "test/accuracy": record.metrics.get("test/accuracy"),
        "test/loss": record.metrics.get("test/loss"),
        "test/auc": record.metrics.get("test/auc"),
        # A mean over seeds is shown as it is; one run's epoch is a whole number.
        "validation_loss_min_epoch": (
            record.metrics.get("validation_loss_min_epoch", 0)
            if row
            else int(record.metrics.get("validation_loss_min_epoch", 0))
        ),
        OVERFIT_GAP: gap,
        "training_seconds": record.metrics.get("training_seconds"),
    }


def run_page(mlflow_ui: str, experiment_id: str, run_id: str) -> str:
    """A run's page in the MLflow UI, in its "Model training" view: MLflow 3.17's UI opens
    in its GenAI view unless the link (or the user's last choice) says otherwise."""
    return f"{mlflow_ui}/#/experiments/{experiment_id}/runs/{run_id}?workflowType=machine_learning"


def about_run(record: PipelineRecord) -> dict[str, str]:
    """When the pipeline started, and the profile and seed(s) its variants ran with."""
    records = [r for rs in record.variants.values() for r in rs]
    profiles = sorted({r.params["profile"] for r in records if "profile" in r.params})
    seeds = sorted({r.params["seed"] for r in records if "seed" in r.params}, key=int)
    started = (
        datetime.fromtimestamp(record.start_time / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")
        if record.start_time is not None
        else "-"
    )
    return {
        "date": started,
        "profile": ", ".join(profiles) or "-",
        "seeds" if len(seeds) > 1 else "seed": ", ".join(seeds) or "-",
    }


def data_fingerprints(record: PipelineRecord) -> dict[str, str]:
    """The SHA-256 of every data file the variants were trained on, by file name."""
    prefix, suffix = "data.", ".sha256"
    return dict(
        sorted(
            (key[len(prefix) : -len(suffix)], digest)
            for rs in record.variants.values()
            for r in rs
            for key, digest in r.tags.items()
            if key.startswith(prefix) and key.endswith(suffix)
        )
    )


def build_report(
    record: PipelineRecord,
    decisions: list[str] | None = None,
    mlflow_ui: str = MLFLOW_UI,
    monitoring: dict[str, dict] | None = None,
) -> Report:
    """The report of one pipeline run; ``mlflow_ui`` is where its run links point. Runs of
    one variant (or sweep point) on several seeds are shown as their mean, with the
    spread across seeds."""
    grouped = {d: groups(rs) for d, rs in record.variants.items()}
    everything = [r for rs in record.variants.values() for r in rs]
    return Report(
        title=f"keras-variants pipeline {record.pipeline_id}",
        tables={d: [variant_row(g.mean, g) for g in gs] for d, gs in grouped.items()},
        findings={
            d: findings_for(d, [g.mean for g in gs]) + sweep_findings(record.variants[d])
            for d, gs in grouped.items()
        },
        figures=figures(grouped),
        decisions=list(decisions or []),
        about=about_run(record),
        fingerprints=data_fingerprints(record),
        runs={
            dataset: run_page(mlflow_ui, record.experiments[dataset], run_id)
            for dataset, run_id in record.parents.items()
            if dataset in record.experiments
        },
        claims=[verdict_row(d) for d in lecture_verdicts(everything)],
        calibration=calibration_sections(record.variants),
        monitoring=dict(monitoring or {}),
    )


def _curve(ax, group: Group, key: str, style: str, label: str) -> None:
    """The (mean) curve, with a band of one standard deviation across seeds if several."""
    values = np.asarray(group.mean.curves[key])
    epochs = np.arange(1, len(values) + 1)
    (line,) = ax.plot(epochs, values, style, label=label, markersize=3)
    if group.seeds > 1:
        spread = group.spread[key]
        ax.fill_between(epochs, values - spread, values + spread, alpha=0.2,
                        color=line.get_color(), linewidth=0)  # fmt: skip


def figures(grouped: dict[str, list[Group]]) -> dict[str, bytes]:
    """The lecture's plots as PNG bytes: mean curves, bands across seeds."""
    from matplotlib.ticker import MaxNLocator

    plt = pyplot()

    out: dict[str, bytes] = {}
    seeds = max((g.seeds for gs in grouped.values() for g in gs), default=1)
    band = f" (mean of {seeds} seeds, band: 1 sd)" if seeds > 1 else ""
    imdb = {g.label: g for g in grouped.get("imdb", [])}
    if "imdb_dense" in imdb and len(imdb) > 1:
        others = [v for v in imdb if v != "imdb_dense"]
        fig, axes = plt.subplots(1, len(others), figsize=(5 * len(others), 3.6), squeeze=False)
        for ax, name in zip(axes[0], others, strict=True):
            for label, style in (("imdb_dense", "o--"), (name, "s-")):
                _curve(ax, imdb[label], "val/loss", style, label)
            ax.set(title=f"original vs {name}", xlabel="epoch", ylabel="validation loss")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.legend()
        fig.suptitle(f"IMDb validation loss{band}")
        out["imdb_validation_loss.png"] = _png(fig)
    for dataset, gs in grouped.items():
        if not gs:
            continue
        fig, axes = plt.subplots(1, len(gs), figsize=(4 * len(gs), 3.4), squeeze=False)
        for ax, g in zip(axes[0], gs, strict=True):
            _curve(ax, g, "train/loss", "o-", "training")
            _curve(ax, g, "val/loss", "s-", "validation")
            ax.set(title=g.label, xlabel="epoch", ylabel="loss")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.legend()
        if band:
            fig.suptitle(f"{dataset}: training vs validation loss{band}")
        out[f"{dataset}_training_vs_validation.png"] = _png(fig)
    mnist = grouped.get("mnist", [])
    if len(mnist) > 1:
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
        for g in mnist:
            for ax, key in zip(axes, ("val/accuracy", "val/loss"), strict=True):
                _curve(ax, g, key, "o-", g.label)
                ax.set(title=f"MNIST {key}{band}", xlabel="epoch")
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
                ax.legend()
        out["mnist_dense_vs_cnn.png"] = _png(fig)
    return out


def _row_cell(row: dict[str, object], key: str) -> str:
    """A table cell; with several seeds, the mean and the standard deviation across them."""
    text = _cell(row.get(key), key)
    spread = row.get(SPREAD, {}).get(key)  # type: ignore[union-attr]
    if spread is None or row.get(key) is None:
        return text
    return f"{text} ± {_cell(spread, key).lstrip('+')}"


def _columns(rows: list[dict[str, object]]) -> list[tuple[str, str]]:
    """The table's columns, with the number of seeds when any row has several, without a
    column no row has a value for (MNIST's AUC)."""
    columns = [c for c in COLUMNS if any(row.get(c[1]) is not None for row in rows)]
    if any("seeds" in row for row in rows):
        return [*columns[:1], ("seeds", "seeds"), *columns[1:]]
    return columns


def _cell(value: object, key: str = "") -> str:
    if value is None:
        return "-"
    if key == "training_seconds" or (
        key == "validation_loss_min_epoch" and isinstance(value, float)
    ):
        return f"{value:.1f}"
    if key == OVERFIT_GAP:
        return f"{value:+.4f}"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 100 else f"{value:.1f}"
    return str(value)


def _verdict(text: str) -> str:
    return f"**{text}**"


def to_markdown(report: Report, embed_images: bool = True) -> str:
    """Markdown with the plots as data URIs (Prefect's UI shows those, not file names), or,
    with ``embed_images=False``, referring to the PNG files written beside it."""
    lines = [f"# {report.title}", ""]
    lines += [f"- **{label}**: {text}" for label, text in report.about.items()]
    lines += [f"- **{file}** SHA-256: `{digest}`" for file, digest in report.fingerprints.items()]
    if report.runs:
        links = ", ".join(f"[{dataset}]({url})" for dataset, url in report.runs.items())
        lines.append(f"- **MLflow runs**: {links}")
    lines.append("")
    if report.claims:
        # Prefect's artifact view clips a wide table: the table keeps the short cells, each
        # claim's statement, measure and reason follow it.
        lines += ["## Lecture claims", "", CLAIMS_INTRO, ""]
        lines.append("| " + " | ".join(h for h, _ in NARROW_CLAIM_COLUMNS) + " |")
        lines.append("|" + " --- |" * len(NARROW_CLAIM_COLUMNS))
        lines += [
            "| " + " | ".join(_verdict(row[k]) if k == "verdict" else row[k]
                             for _, k in NARROW_CLAIM_COLUMNS) + " |"
            for row in report.claims
        ]  # fmt: skip
        lines.append("")
        lines += [
            f"- **{row['claim']}** Measure (paired by seed): {row['measure']}; "
            f"{row['verdict']}: {row['why']}."
            for row in report.claims
        ]
        lines.append("")
    for dataset, rows in report.tables.items():
        lines += [f"## {dataset}", ""]
        columns = _columns(rows)
        lines.append("| " + " | ".join(h for h, _ in columns) + " |")
        lines.append("|" + " --- |" * len(columns))
        lines += ["| " + " | ".join(_row_cell(row, k) for _, k in columns) + " |" for row in rows]
        lines += ["", *(f"- {f}" for f in report.findings.get(dataset, [])), ""]
        lines += [
            f"![{name}]({_png_uri(png) if embed_images else name})"
            for name, png in report.figures.items()
            if name.startswith(dataset)
        ]
        lines.append("")
        if dataset in report.calibration:
            lines += calibration_report.to_markdown(report.calibration[dataset], embed_images)
        if dataset in report.monitoring:
            lines += monitoring_report.to_markdown(report.monitoring[dataset])
    if report.decisions:
        lines += ["## Registry decisions", "", *(f"- {d}" for d in report.decisions), ""]
    return "\n".join(lines)


def to_html(report: Report) -> str:
    """One self-contained page: styles inline, plots embedded as data URIs."""
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{html.escape(report.title)}</title><style>",
        "body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1200px;color:#222}",
        "table{border-collapse:collapse;margin:1rem 0}th,td{border:1px solid #ccc;",
        "padding:.3rem .6rem;text-align:right}th{background:#f3f3f3}",
        "td:first-child,td.text{text-align:left}",
        "img{max-width:100%;margin:.5rem 0}dl{display:grid;grid-template-columns:auto 1fr;",
        "gap:.2rem 1rem}dt{font-weight:600}dd{margin:0}</style></head><body>",
        f"<h1>{html.escape(report.title)}</h1><dl>",
    ]
    parts += [
        f"<dt>{html.escape(label)}</dt><dd>{html.escape(text)}</dd>"
        for label, text in report.about.items()
    ]
    parts += [
        f"<dt>{html.escape(file)} SHA-256</dt><dd><code>{html.escape(digest)}</code></dd>"
        for file, digest in report.fingerprints.items()
    ]
    if report.runs:
        links = ", ".join(
            f"<a href='{html.escape(url)}'>{html.escape(dataset)}</a>"
            for dataset, url in report.runs.items()
        )
        parts.append(f"<dt>MLflow runs</dt><dd>{links}</dd>")
    parts.append("</dl>")
    if report.claims:
        parts.append(f"<h2>Lecture claims</h2><p>{html.escape(CLAIMS_INTRO)}</p><table><tr>")
        parts += [f"<th>{html.escape(h)}</th>" for h, _ in CLAIM_COLUMNS]
        parts.append("</tr>")
        for row in report.claims:
            cells = "".join(
                f"<td class='{'verdict' if k == 'verdict' else 'text'}'>"
                + (f"<b>{html.escape(row[k])}</b>" if k == "verdict" else html.escape(row[k]))
                + "</td>"
                for _, k in CLAIM_COLUMNS
            )
            parts.append(f"<tr>{cells}</tr>")
        parts.append("</table>")
    for dataset, rows in report.tables.items():
        parts.append(f"<h2>{html.escape(dataset)}</h2><table><tr>")
        columns = _columns(rows)
        parts += [f"<th>{html.escape(h)}</th>" for h, _ in columns]
        parts.append("</tr>")
        for row in rows:
            cells = "".join(f"<td>{html.escape(_row_cell(row, k))}</td>" for _, k in columns)
            parts.append(f"<tr>{cells}</tr>")
        parts.append("</table><ul>")
        parts += [f"<li>{html.escape(f)}</li>" for f in report.findings.get(dataset, [])]
        parts.append("</ul>")
        for name, png in report.figures.items():
            if name.startswith(dataset):
                parts.append(f"<img alt='{html.escape(name)}' src='{_png_uri(png)}'>")
        if dataset in report.calibration:
            parts.append(calibration_report.to_html(report.calibration[dataset]))
        if dataset in report.monitoring:
            parts.append(monitoring_report.to_html(report.monitoring[dataset]))
    if report.decisions:
        parts.append("<h2>Registry decisions</h2><ul>")
        parts += [f"<li>{html.escape(d)}</li>" for d in report.decisions]
        parts.append("</ul>")
    parts.append("</body></html>")
    return "".join(parts)


def write_report(report: Report, folder: Path, pipeline_id: str) -> Path:
    """``folder/<pipeline_id>/report.{html,md}`` plus PNGs, and ``folder/latest.html``."""
    target = folder / pipeline_id
    target.mkdir(parents=True, exist_ok=True)
    calibration = [s.figures for s in report.calibration.values()]
    for name, png in [*report.figures.items(), *(f for c in calibration for f in c.items())]:
        (target / name).write_bytes(png)
    (target / "report.md").write_text(to_markdown(report, embed_images=False))
    page = to_html(report)
    (target / "report.html").write_text(page)
    (folder / "latest.html").write_text(page)
    return target
