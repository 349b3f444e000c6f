"""The comparison report: tables, the lecture's plots and findings stated from the numbers.

Built only from a :class:`~keras_variants.runs.PipelineRecord` read back from MLflow, so it
can be rebuilt for any past run. Rendering is pure; writing files is :func:`write_report`.
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from keras_variants.runs import PipelineRecord, VariantRecord

BASELINE = {"imdb": "imdb_dense", "mnist": "mnist_dense"}
# Where the README's `mlflow ui ... --port 5000` serves the UI; a tracking server serves its own.
MLFLOW_UI = "http://127.0.0.1:5000"
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


def variant_row(record: VariantRecord) -> dict[str, object]:
    curves = record.curves
    gap = curves["val/loss"][-1] - curves["train/loss"][-1] if curves["val/loss"] else None
    return {
        "variant": record.variant,
        "parameters": int(record.params.get("parameter_count", 0)),
        "test/accuracy": record.metrics.get("test/accuracy"),
        "test/loss": record.metrics.get("test/loss"),
        "test/auc": record.metrics.get("test/auc"),
        "validation_loss_min_epoch": int(record.metrics.get("validation_loss_min_epoch", 0)),
        OVERFIT_GAP: gap,
        "training_seconds": record.metrics.get("training_seconds"),
    }


def mlflow_ui_for(tracking_uri: str) -> str:
    """The MLflow UI of a store: a tracking server serves its own, a local store the README's."""
    if tracking_uri.startswith(("http://", "https://")):
        return tracking_uri.rstrip("/")
    return MLFLOW_UI


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


def _trend(record: VariantRecord) -> str:
    epoch = int(record.metrics["validation_loss_min_epoch"])
    epochs = len(record.curves["val/loss"])
    if epoch < epochs:
        return f"starts to overfit after epoch {epoch} of {epochs}"
    return f"was still improving at its last epoch ({epochs})"


def findings_for(dataset: str, records: list[VariantRecord]) -> list[str]:
    """Sentences derived from the metrics: where each variant starts to overfit, who wins."""
    if not records:
        return []
    lines = []
    by_name = {r.variant: r for r in records}
    baseline = by_name.get(BASELINE[dataset])
    for r in records:
        line = f"{r.variant} {_trend(r)} (lowest validation loss {min(r.curves['val/loss']):.4f})"
        if baseline is not None and r is not baseline:
            delta = r.curves["val/loss"][-1] - baseline.curves["val/loss"][-1]
            line += (
                f"; {baseline.variant} {_trend(baseline)}, and its final "
                f"validation loss is {abs(delta):.4f} {'higher' if delta < 0 else 'lower'}"
            )
        lines.append(line + ".")
    best_val = max(records, key=lambda r: r.metrics.get("val/accuracy", 0.0))
    best_test = max(records, key=lambda r: r.metrics.get("test/accuracy", 0.0))
    lines.append(
        f"Best on validation accuracy: {best_val.variant} "
        f"({best_val.metrics['val/accuracy']:.4f}); best test accuracy: {best_test.variant} "
        f"({best_test.metrics['test/accuracy']:.4f})."
    )
    return lines


def build_report(
    record: PipelineRecord, decisions: list[str] | None = None, mlflow_ui: str = MLFLOW_UI
) -> Report:
    """The report of one pipeline run; ``mlflow_ui`` is where its run links point."""
    tables = {d: [variant_row(r) for r in rs] for d, rs in record.variants.items()}
    findings = {d: findings_for(d, rs) for d, rs in record.variants.items()}
    return Report(
        title=f"keras-variants pipeline {record.pipeline_id}",
        tables=tables,
        findings=findings,
        figures=figures(record),
        decisions=list(decisions or []),
        about=about_run(record),
        fingerprints=data_fingerprints(record),
        runs={
            dataset: run_page(mlflow_ui, record.experiments[dataset], run_id)
            for dataset, run_id in record.parents.items()
            if dataset in record.experiments
        },
    )


def figures(record: PipelineRecord) -> dict[str, bytes]:
    """The lecture's plots as PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib.ticker import MaxNLocator

    out: dict[str, bytes] = {}
    imdb = {r.variant: r for r in record.variants.get("imdb", [])}
    if "imdb_dense" in imdb and len(imdb) > 1:
        others = [v for v in imdb if v != "imdb_dense"]
        fig, axes = plt.subplots(1, len(others), figsize=(5 * len(others), 3.6), squeeze=False)
        for ax, name in zip(axes[0], others, strict=True):
            for variant, style in (("imdb_dense", "o--"), (name, "s-")):
                losses = imdb[variant].curves["val/loss"]
                ax.plot(range(1, len(losses) + 1), losses, style, label=variant, markersize=3)
            ax.set(title=f"original vs {name}", xlabel="epoch", ylabel="validation loss")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.legend()
        out["imdb_validation_loss.png"] = _png(fig)
    for dataset, records in record.variants.items():
        if not records:
            continue
        fig, axes = plt.subplots(1, len(records), figsize=(4 * len(records), 3.4), squeeze=False)
        for ax, r in zip(axes[0], records, strict=True):
            epochs = range(1, len(r.curves["train/loss"]) + 1)
            ax.plot(epochs, r.curves["train/loss"], "o-", label="training", markersize=3)
            ax.plot(epochs, r.curves["val/loss"], "s-", label="validation", markersize=3)
            ax.set(title=r.variant, xlabel="epoch", ylabel="loss")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.legend()
        out[f"{dataset}_training_vs_validation.png"] = _png(fig)
    mnist = record.variants.get("mnist", [])
    if len(mnist) > 1:
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
        for r in mnist:
            for ax, key in zip(axes, ("val/accuracy", "val/loss"), strict=True):
                ax.plot(range(1, len(r.curves[key]) + 1), r.curves[key], "o-", label=r.variant)
                ax.set(title=f"MNIST {key}", xlabel="epoch")
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
                ax.legend()
        out["mnist_dense_vs_cnn.png"] = _png(fig)
    return out


def _png(fig) -> bytes:
    from matplotlib import pyplot as plt

    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return buffer.getvalue()


def _cell(value: object, key: str = "") -> str:
    if value is None:
        return "-"
    if key == "training_seconds":
        return f"{value:.1f}"
    if key == OVERFIT_GAP:
        return f"{value:+.4f}"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 100 else f"{value:.1f}"
    return str(value)


def _png_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


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
    for dataset, rows in report.tables.items():
        lines += [f"## {dataset}", ""]
        lines.append("| " + " | ".join(h for h, _ in COLUMNS) + " |")
        lines.append("|" + " --- |" * len(COLUMNS))
        lines += ["| " + " | ".join(_cell(row[k], k) for _, k in COLUMNS) + " |" for row in rows]
        lines += ["", *(f"- {f}" for f in report.findings.get(dataset, [])), ""]
        lines += [
            f"![{name}]({_png_uri(png) if embed_images else name})"
            for name, png in report.figures.items()
            if name.startswith(dataset)
        ]
        lines.append("")
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
        "td:first-child{text-align:left}",
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
    for dataset, rows in report.tables.items():
        parts.append(f"<h2>{html.escape(dataset)}</h2><table><tr>")
        parts += [f"<th>{html.escape(h)}</th>" for h, _ in COLUMNS]
        parts.append("</tr>")
        for row in rows:
            cells = "".join(f"<td>{html.escape(_cell(row[k], k))}</td>" for _, k in COLUMNS)
            parts.append(f"<tr>{cells}</tr>")
        parts.append("</table><ul>")
        parts += [f"<li>{html.escape(f)}</li>" for f in report.findings.get(dataset, [])]
        parts.append("</ul>")
        for name, png in report.figures.items():
            if name.startswith(dataset):
                parts.append(f"<img alt='{html.escape(name)}' src='{_png_uri(png)}'>")
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
    for name, png in report.figures.items():
        (target / name).write_bytes(png)
    (target / "report.md").write_text(to_markdown(report, embed_images=False))
    page = to_html(report)
    (target / "report.html").write_text(page)
    (folder / "latest.html").write_text(page)
    return target
