"""A report as pages: Markdown (for the report folder and Prefect's artifact) and one
self-contained HTML page, and writing them with the plots under ``reports/``.

Pure rendering of a :class:`~keras_variants.reporting.report.Report`; :func:`write_report`
is the only I/O.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from keras_variants.reporting import calibration_report, ledger_report, monitoring_report
from keras_variants.reporting.plots import png_uri as _png_uri
from keras_variants.reporting.report import OVERFIT_GAP, SPREAD, Report
from keras_variants.studies.claims import MIN_SEEDS

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
CLAIMS_INTRO = (
    "Each claim is decided by the mean difference of its measure between two variants, "
    "paired by seed, and the 95% t-interval of that mean: holds when the interval lies on "
    "the claimed side of zero, does not hold when it lies on the other side (or the "
    "variants never differ), inconclusive when it spans zero or fewer than 3 seeds pair up."
)
CLAIM_COLUMNS = [
    ("claim", "claim"),
    ("measure (paired by seed)", "measure"),
    ("mean difference", "difference"),
    ("95% interval", "interval"),
    ("seeds", "seeds"),
    ("verdict", "verdict"),
    ("why", "why"),
    ("where the book says otherwise", "book"),
]
NEEDS_SEEDS = (
    f"The lecture's claims are decided across seeds: each needs at least {MIN_SEEDS} paired "
    "seeds, "
    "and this run has fewer. Below is what this run measured, undecided; run "
    "'variants run --seeds 3' (or '--study lecture') to decide them."
)
ONE_SEED_COLUMNS = [("claim", "claim"), ("measure", "measure"), ("this run", "difference")]
NARROW_CLAIM_COLUMNS = [  # the Markdown table: a claim's number; the rest below the table
    ("claim", "number"),
    *(c for c in CLAIM_COLUMNS if c[1] in ("difference", "interval", "seeds", "verdict")),
]
LEDGER_FILE = "ledger.json"  # beside the report, so on the parent runs as report/ledger.json


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


def decided_by_seeds(report: Report) -> bool:
    """Whether any claim has the seeds a verdict needs (:data:`MIN_SEEDS`)."""
    return any(row["seeds"].split()[0].isdigit() and int(row["seeds"].split()[0]) >= MIN_SEEDS
               for row in report.claims)  # fmt: skip


def _claims_markdown(report: Report) -> list[str]:
    if not decided_by_seeds(report):
        lines = ["## Lecture claims", "", NEEDS_SEEDS, ""]
        lines.append("| " + " | ".join(h for h, _ in ONE_SEED_COLUMNS) + " |")
        lines.append("|" + " --- |" * len(ONE_SEED_COLUMNS))
        lines += ["| " + " | ".join(row[k] for _, k in ONE_SEED_COLUMNS) + " |"
                  for row in report.claims]  # fmt: skip
        return [*lines, "", *_ledger_markdown(report)]
    # Prefect's artifact view clips a wide table: the table keeps the short cells, each
    # claim's statement, measure and reason follow it.
    lines = ["## Lecture claims", "", report.claims_rule or CLAIMS_INTRO, ""]
    lines.append(
        "| " + " | ".join(h for h, _ in _claim_columns(report, NARROW_CLAIM_COLUMNS)) + " |"
    )
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
        + (f" Where the book says otherwise: {row['book']}." if row.get("book", "-") != "-" else "")
        for row in report.claims
    ]
    return [*lines, "", *_ledger_markdown(report)]


def _claim_columns(report: Report, columns: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """``columns``, the interval's header without its level where the looks of an
    auto-seeded study gave the intervals other levels (each cell names its own)."""
    if not any(" at " in row["interval"] for row in report.claims):
        return columns
    return [("interval", k) if k == "interval" else (h, k) for h, k in columns]


def _ledger_markdown(report: Report) -> list[str]:
    return ledger_report.to_markdown(report.ledger) if report.ledger else []


def to_markdown(report: Report, embed_images: bool = True) -> str:
    """Markdown with the plots as data URIs (Prefect's UI shows those, not file names), or,
    with ``embed_images=False``, referring to the PNG files written beside it. It opens on
    the answer: the champions, then every variant's numbers, then the lecture's claims;
    the curves and details per data set follow, and the data's fingerprints last."""
    lines = [f"# {report.title}", ""]
    lines += [f"- **{label}**: {text}" for label, text in report.about.items()]
    if report.runs:
        links = ", ".join(f"[{dataset}]({url})" for dataset, url in report.runs.items())
        lines.append(f"- **MLflow runs**: {links}")
    lines.append("")
    if report.decisions:
        lines += ["## Champions", "", *(f"- {d}" for d in report.decisions), ""]
    lines += ["## Variants", ""]
    for dataset, rows in report.tables.items():
        columns = _columns(rows)
        lines += [f"**{dataset}**", ""]
        lines.append("| " + " | ".join(h for h, _ in columns) + " |")
        lines.append("|" + " --- |" * len(columns))
        lines += ["| " + " | ".join(_row_cell(row, k) for _, k in columns) + " |" for row in rows]
        lines.append("")
    if report.claims:
        lines += _claims_markdown(report)
    for dataset in report.tables:
        lines += [f"## {dataset}: curves and details", ""]
        lines += [*(f"- {f}" for f in report.findings.get(dataset, [])), ""]
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
    if report.fingerprints:
        lines += ["## Data", ""]
        lines += [f"- **{f}** SHA-256: `{digest}`" for f, digest in report.fingerprints.items()]
        lines.append("")
    return "\n".join(lines)


def _table_html(columns: list[tuple[str, str]], rows: list[dict], cell) -> list[str]:
    parts = ["<table><tr>", *(f"<th>{html.escape(h)}</th>" for h, _ in columns), "</tr>"]
    for row in rows:
        parts.append("<tr>" + "".join(cell(row, k) for _, k in columns) + "</tr>")
    return [*parts, "</table>"]


def _claims_html(report: Report) -> list[str]:
    def text(row: dict, key: str) -> str:
        return f"<td class='text'>{html.escape(row[key])}</td>"

    ledger = [ledger_report.to_html(report.ledger)] if report.ledger else []
    if not decided_by_seeds(report):
        parts = [f"<h2>Lecture claims</h2><p class='note'>{html.escape(NEEDS_SEEDS)}</p>"]
        return parts + _table_html(ONE_SEED_COLUMNS, report.claims, text) + ledger

    def cell(row: dict, key: str) -> str:
        if key == "verdict":
            return f"<td class='verdict'><b>{html.escape(row[key])}</b></td>"
        return text(row, key)

    intro = report.claims_rule or CLAIMS_INTRO
    parts = [f"<h2>Lecture claims</h2><p>{html.escape(intro)}</p>"]
    has_book = any("book" in row for row in report.claims)
    columns = [c for c in CLAIM_COLUMNS if c[1] != "book" or has_book]
    columns = _claim_columns(report, columns)
    return parts + _table_html(columns, report.claims, cell) + ledger


def to_html(report: Report) -> str:
    """One self-contained page (styles inline, plots embedded as data URIs), in
    :func:`to_markdown`'s order: the answer first."""
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{html.escape(report.title)}</title><style>",
        "body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1200px;color:#222}",
        "table{border-collapse:collapse;margin:.5rem 0 1rem}th,td{border:1px solid #ccc;",
        "padding:.3rem .6rem;text-align:right}th{background:#f3f3f3}",
        "td:first-child,td.text{text-align:left}h3{margin:1rem 0 0}",
        "table.ledger th{text-align:left}table.ledger td{vertical-align:top;font-size:.85rem}",
        "table.ledger td:nth-child(2){min-width:8rem}table.ledger td:nth-child(4)",
        "{min-width:22rem}table.ledger td:nth-child(5){min-width:10rem}",
        "table.ledger td:nth-child(7){min-width:16rem}",
        ".champions li{font-size:1.1rem;margin:.3rem 0}.note{background:#fff8e1;",
        "padding:.5rem .8rem;border-left:4px solid #f0b400}",
        "img{max-width:100%;margin:.5rem 0}dl{display:grid;grid-template-columns:auto 1fr;",
        "gap:.2rem 1rem}dt{font-weight:600}dd{margin:0}</style></head><body>",
        f"<h1>{html.escape(report.title)}</h1><dl>",
    ]
    parts += [
        f"<dt>{html.escape(label)}</dt><dd>{html.escape(text)}</dd>"
        for label, text in report.about.items()
    ]
    if report.runs:
        links = ", ".join(
            f"<a href='{html.escape(url)}'>{html.escape(dataset)}</a>"
            for dataset, url in report.runs.items()
        )
        parts.append(f"<dt>MLflow runs</dt><dd>{links}</dd>")
    parts.append("</dl>")
    if report.decisions:
        parts.append("<h2>Champions</h2><ul class='champions'>")
        parts += [f"<li>{html.escape(d)}</li>" for d in report.decisions]
        parts.append("</ul>")
    parts.append("<h2>Variants</h2>")
    for dataset, rows in report.tables.items():
        parts.append(f"<h3>{html.escape(dataset)}</h3>")
        parts += _table_html(
            _columns(rows), rows, lambda row, k: f"<td>{html.escape(_row_cell(row, k))}</td>"
        )
    if report.claims:
        parts += _claims_html(report)
    for dataset in report.tables:
        parts.append(f"<h2>{html.escape(dataset)}: curves and details</h2><ul>")
        parts += [f"<li>{html.escape(f)}</li>" for f in report.findings.get(dataset, [])]
        parts.append("</ul>")
        for name, png in report.figures.items():
            if name.startswith(dataset):
                parts.append(f"<img alt='{html.escape(name)}' src='{_png_uri(png)}'>")
        if dataset in report.calibration:
            parts.append(calibration_report.to_html(report.calibration[dataset]))
        if dataset in report.monitoring:
            parts.append(monitoring_report.to_html(report.monitoring[dataset]))
    if report.fingerprints:
        parts.append("<h2>Data</h2><dl>")
        parts += [
            f"<dt>{html.escape(file)} SHA-256</dt><dd><code>{html.escape(digest)}</code></dd>"
            for file, digest in report.fingerprints.items()
        ]
        parts.append("</dl>")
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
    if report.ledger:
        (target / LEDGER_FILE).write_text(json.dumps(report.ledger, indent=1))
    page = to_html(report)
    (target / "report.html").write_text(page)
    (folder / "latest.html").write_text(page)
    return target
