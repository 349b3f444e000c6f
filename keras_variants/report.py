"""The comparison report: tables, the lecture's plots and findings stated from the numbers.

Built only from a :class:`~keras_variants.runs.PipelineRecord` read back from MLflow, so it
can be rebuilt for any past run. Rendering is pure; writing files is :func:`write_report`.
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass, field
from pathlib import Path

from keras_variants.runs import PipelineRecord, VariantRecord

BASELINE = {"imdb": "imdb_dense", "mnist": "mnist_dense"}
COLUMNS = [
    ("variant", "variant"),
    ("parameters", "parameters"),
    ("test accuracy", "test/accuracy"),
    ("test loss", "test/loss"),
    ("test AUC", "test/auc"),
    ("lowest val loss at epoch", "validation_loss_min_epoch"),
    ("train - val loss (last epoch)", "gap"),
    ("training s", "training_seconds"),
]


@dataclass
class Report:
    title: str
    tables: dict[str, list[dict[str, object]]]  # data set -> one row per variant
    findings: dict[str, list[str]]
    figures: dict[str, bytes]  # file name -> PNG bytes
    decisions: list[str] = field(default_factory=list)


def variant_row(record: VariantRecord) -> dict[str, object]:
    curves = record.curves
    gap = curves["train/loss"][-1] - curves["val/loss"][-1] if curves["val/loss"] else None
    return {
        "variant": record.variant,
        "parameters": int(record.params.get("parameter_count", 0)),
        "test/accuracy": record.metrics.get("test/accuracy"),
        "test/loss": record.metrics.get("test/loss"),
        "test/auc": record.metrics.get("test/auc"),
        "validation_loss_min_epoch": int(record.metrics.get("validation_loss_min_epoch", 0)),
        "gap": gap,
        "training_seconds": record.metrics.get("training_seconds"),
    }


def findings_for(dataset: str, records: list[VariantRecord]) -> list[str]:
    """Sentences derived from the metrics: where each variant starts to overfit, who wins."""
    if not records:
        return []
    lines = []
    by_name = {r.variant: r for r in records}
    baseline = by_name.get(BASELINE[dataset])
    for r in records:
        epoch = int(r.metrics["validation_loss_min_epoch"])
        epochs = len(r.curves["val/loss"])
        trend = (
            f"starts to overfit after epoch {epoch} of {epochs}"
            if epoch < epochs
            else f"was still improving at its last epoch ({epochs})"
        )
        line = f"{r.variant} {trend} (lowest validation loss {min(r.curves['val/loss']):.4f})"
        if baseline is not None and r is not baseline:
            base_epoch = int(baseline.metrics["validation_loss_min_epoch"])
            delta = r.curves["val/loss"][-1] - baseline.curves["val/loss"][-1]
            line += (
                f"; {baseline.variant} overfits after epoch {base_epoch}, and its final "
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


def build_report(record: PipelineRecord, decisions: list[str] | None = None) -> Report:
    tables = {d: [variant_row(r) for r in rs] for d, rs in record.variants.items()}
    findings = {d: findings_for(d, rs) for d, rs in record.variants.items()}
    return Report(
        title=f"keras-variants pipeline {record.pipeline_id}",
        tables=tables,
        findings=findings,
        figures=figures(record),
        decisions=list(decisions or []),
    )


def figures(record: PipelineRecord) -> dict[str, bytes]:
    """The lecture's plots as PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

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
            ax.legend()
        out[f"{dataset}_training_vs_validation.png"] = _png(fig)
    mnist = record.variants.get("mnist", [])
    if len(mnist) > 1:
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
        for r in mnist:
            for ax, key in zip(axes, ("val/accuracy", "val/loss"), strict=True):
                ax.plot(range(1, len(r.curves[key]) + 1), r.curves[key], "o-", label=r.variant)
                ax.set(title=f"MNIST {key}", xlabel="epoch")
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
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 100 else f"{value:.1f}"
    return str(value)


def to_markdown(report: Report) -> str:
    lines = [f"# {report.title}", ""]
    for dataset, rows in report.tables.items():
        lines += [f"## {dataset}", ""]
        lines.append("| " + " | ".join(h for h, _ in COLUMNS) + " |")
        lines.append("|" + " --- |" * len(COLUMNS))
        lines += ["| " + " | ".join(_cell(row[k], k) for _, k in COLUMNS) + " |" for row in rows]
        lines += ["", *(f"- {f}" for f in report.findings.get(dataset, [])), ""]
        lines += [f"![{name}]({name})" for name in report.figures if name.startswith(dataset)]
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
        "img{max-width:100%;margin:.5rem 0}</style></head><body>",
        f"<h1>{html.escape(report.title)}</h1>",
    ]
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
                data = base64.b64encode(png).decode()
                parts.append(f"<img alt='{name}' src='data:image/png;base64,{data}'>")
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
    (target / "report.md").write_text(to_markdown(report))
    page = to_html(report)
    (target / "report.html").write_text(page)
    (folder / "latest.html").write_text(page)
    return target
