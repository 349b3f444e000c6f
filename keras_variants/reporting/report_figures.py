"""The lecture's plots of a report: mean curves per variant, with a band of one standard
deviation across seeds, as PNG bytes (matplotlib loads on use)."""

from __future__ import annotations

import numpy as np

from keras_variants.reporting.findings import Group
from keras_variants.reporting.plots import cached, pyplot
from keras_variants.reporting.plots import png as _png


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
    """The lecture's plots as PNG bytes: mean curves, bands across seeds; each data set's
    drawn again only when one of its curves changed (so a run can draw one data set's
    while the other still trains, and its report takes them from the cache)."""
    return {name: png for d, gs in grouped.items() for name, png in dataset_figures(d, gs).items()}


def dataset_figures(dataset: str, groups: list[Group]) -> dict[str, bytes]:
    """:func:`figures` of one data set."""
    content = {dataset: [(g.label, g.seeds, g.mean.curves, g.spread) for g in groups]}
    return cached(__name__, content, lambda: _draw({dataset: groups}))  # all _draw reads


def _draw(grouped: dict[str, list[Group]]) -> dict[str, bytes]:
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
