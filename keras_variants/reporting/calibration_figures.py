"""The plots of the report's "Calibration and uncertainty" part: reliability diagrams per
variant, accuracy and confidence on rotated digits, confidence and entropy on reviews moved
away from the data; MC dropout beside the deterministic prediction.

Drawn from :class:`~keras_variants.tracking.records.VariantRecord` lists (each run's
``uncertainty.json``) as PNG bytes; matplotlib loads on use.
"""

from __future__ import annotations

import math
from typing import Any

from keras_variants.reporting.plots import cached, png, pyplot
from keras_variants.tracking.records import VariantRecord


def cell(value: object) -> str:
    """A metric as the part's tables and plot titles show it: 4 decimals; a missing value
    or NaN (an AUROC with no wrong prediction) as "-"."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


IMDB_SETS = {
    "test": "test reviews",
    "shuffled_words": "shuffled words",
    "random_words": "random words",
}


def figures(dataset: str, records: list[VariantRecord]) -> dict[str, bytes]:
    """The reliability diagrams and the far-from-data plot of the runs that logged
    ``uncertainty.json`` (drawn again only when one of them changed)."""
    content = [dataset, [(r.label, r.metrics, r.uncertainty) for r in records]]
    return cached(__name__, content, lambda: _draw(dataset, records))  # all _draw reads


def _draw(dataset: str, records: list[VariantRecord]) -> dict[str, bytes]:
    logged = [r for r in records if r.uncertainty]
    if not logged:
        return {}
    out = {f"{dataset}_reliability.png": reliability_figure(dataset, logged)}
    far = [r for r in logged if r.uncertainty.get("far_from_data")]
    if far and dataset == "mnist":
        out["mnist_rotated_digits.png"] = rotation_figure(far)
    elif far:
        out[f"{dataset}_far_from_data.png"] = far_figure(dataset, far)
    return out


def reliability_figure(dataset: str, records: list[VariantRecord]) -> bytes:
    """A reliability diagram per variant: accuracy against mean confidence per bin, the
    diagonal of perfect calibration, and the share of test rows in each bin as bars;
    MC dropout beside the deterministic prediction for dropout variants."""
    plt = pyplot()
    columns = min(len(records), 3)
    rows = math.ceil(len(records) / columns)
    fig, axes = plt.subplots(
        rows, columns, figsize=(3.6 * columns + 2.6, 3.9 * rows), squeeze=False, sharey=True
    )
    for ax in axes.flat[len(records) :]:
        ax.set_visible(False)
    classes = 10 if dataset == "mnist" else 2
    legend: dict[str, Any] = {}
    for ax, record in zip(axes.flat, records, strict=False):
        reliability = record.uncertainty["reliability"]
        edges = reliability["deterministic"]["bin_edges"]
        # The top label's confidence is at least 1/C: start at the edge of that bin.
        low = edges[math.floor((len(edges) - 1) / classes)]
        (diagonal,) = ax.plot([low, 1], [low, 1], ":", color="grey")
        legend["perfectly calibrated"] = diagonal
        kinds = [k for k in ("deterministic", "mc_dropout") if k in reliability]
        width = (edges[1] - edges[0]) / len(kinds)
        for i, kind in enumerate(kinds):
            bins = reliability[kind]
            total = sum(bins["count"]) or 1
            filled = [j for j, n in enumerate(bins["count"]) if n]
            name = "MC dropout" if kind == "mc_dropout" else "deterministic"
            x = [bins["confidence"][j] for j in filled]
            y = [bins["accuracy"][j] for j in filled]
            (line,) = ax.plot(x, y, "s--" if i else "o-", color=f"C{i}", markersize=4,
                              linewidth=1, alpha=0.6)  # fmt: skip
            # A bin of a few rows gives a wild accuracy: its marker is as small as its share.
            shares = [bins["count"][j] / total for j in filled]
            ax.scatter(x, y, s=[4 + 150 * share for share in shares], color=f"C{i}",
                       marker="s" if i else "o", zorder=3)  # fmt: skip
            bars = ax.bar(
                [edges[j] + width * i for j in filled],
                shares,
                width=width,
                align="edge",
                color=f"C{i}",
                alpha=0.25,
            )
            legend[f"{name}: accuracy per bin"] = line
            legend[f"{name}: share of test rows per bin"] = bars
        title = f"{record.label}\nECE {cell(record.metrics.get('test/ece'))}"
        if "mc_dropout" in kinds:
            title += f", MC ECE {cell(record.metrics.get('test/mc_ece'))}"
        ax.set(title=title, xlabel="confidence (top-label probability)", xlim=(low, 1.02))
        ax.set(ylim=(0, 1.02))
    for ax in axes[:, 0]:
        ax.set_ylabel("accuracy / share of test rows")
    _legend_right(axes[0, -1], legend)
    fig.suptitle(
        f"{dataset}: reliability diagrams (test split, 15 confidence bins; "
        "marker area: share of rows)"
    )
    return png(fig)


def _legend_right(ax: Any, entries: dict[str, Any]) -> None:
    """One legend for the whole figure, right of its top right panel (tight layout makes
    room). Figures stay within about 13 inches, the report page's width at 90 dpi."""
    ax.legend(entries.values(), entries.keys(), loc="upper left", bbox_to_anchor=(1.03, 1),
              fontsize=8, frameon=False)  # fmt: skip


def _far_panels(
    records: list[VariantRecord], axes: Any, panels: list[tuple[str, str, float, str]], names: dict
) -> None:
    """Per panel (key, title, a reference line's value and meaning): each variant's line
    and, with dropout, its MC dropout line dashed in the same colour; x is the
    far-from-data points, renamed by ``names``."""
    legend: dict[str, Any] = {}
    for ax, (key, title, reference, meaning) in zip(axes, panels, strict=True):
        for i, record in enumerate(records):
            far = record.uncertainty["far_from_data"]
            x = [names.get(p, p) for p in far["points"]]
            (line,) = ax.plot(x, far[key], "o-", color=f"C{i}", markersize=4)
            legend[record.label] = line
            if f"mc_{key}" in far:
                (mc,) = ax.plot(x, far[f"mc_{key}"], "s--", color=f"C{i}", markersize=4)
                legend[f"{record.label} (MC dropout)"] = mc
        ax.axhline(reference, linestyle=":", color="grey")
        ax.set_title(f"{title}\n(dotted: {meaning}, {reference:.3g})", fontsize=10)
    _legend_right(axes[-1], legend)


def rotation_figure(records: list[VariantRecord]) -> bytes:
    """Accuracy, mean max-probability and mean predictive entropy against the rotation
    angle of the test digits, per variant (MC dropout dashed)."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(13.3, 4))
    panels = [
        ("accuracy", "accuracy", 0.1, "chance"),
        ("mean_max_probability", "mean max-probability", 0.1, "lowest possible"),
        ("entropy_mean", "mean predictive entropy, nats", math.log(10), "highest possible"),
    ]
    _far_panels(records, axes, panels, {})
    for ax in axes:
        ax.set(xlabel="rotation (degrees)", xticks=list(range(0, 181, 30)))
    rows = records[0].uncertainty["far_from_data"]["rows"]
    fig.suptitle(f"mnist: {rows} test digits rotated away from the data (MC dropout dashed)")
    return png(fig)


def far_figure(dataset: str, records: list[VariantRecord]) -> bytes:
    """Mean confidence and mean predictive entropy on test reviews, the same reviews with
    their words shuffled, and reviews of random words, per variant (MC dropout dashed)."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    panels = [
        ("mean_max_probability", "mean confidence (max-probability)", 0.5, "lowest possible"),
        ("entropy_mean", "mean predictive entropy, nats", math.log(2), "highest possible"),
    ]
    _far_panels(records, axes, panels, IMDB_SETS)
    rows = records[0].uncertainty["far_from_data"]["rows"]
    fig.suptitle(f"{dataset}: {rows} test reviews moved away from the data (MC dropout dashed)")
    return png(fig)
