"""The report's figures and their cache."""

from __future__ import annotations

from keras_variants.reporting.findings import groups
from keras_variants.tracking.records import VariantRecord


def _curves_of(label: str, val_loss: list[float]) -> VariantRecord:
    curves = {"train/loss": [1.0, 0.5], "val/loss": val_loss, "val/accuracy": [0.5, 0.6]}
    return VariantRecord(label, "mnist", "run", {"seed": "0"}, {}, {}, curves)


def test_a_reports_figures_are_drawn_again_only_when_a_curve_changed(tmp_path, monkeypatch):
    """The report's figure cache: the same curves give the same PNG files without drawing;
    another curve, or no cache, draws."""
    from keras_variants.reporting import report_figures
    from keras_variants.reporting.plots import figure_cache

    drawn: list[int] = []
    draw = report_figures._draw
    monkeypatch.setattr(report_figures, "_draw", lambda g: drawn.append(1) or draw(g))
    same = {"mnist": groups([_curves_of("mnist_dense", [0.9, 0.8])])}
    changed = {"mnist": groups([_curves_of("mnist_dense", [0.9, 0.7])])}
    with figure_cache(tmp_path):
        first = report_figures.figures(same)
        again = report_figures.figures(same)
        assert len(drawn) == 1 and again == first and first
        assert report_figures.figures(changed) != first and len(drawn) == 2
    report_figures.figures(same)
    assert len(drawn) == 3
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == sorted(
        p.name for p in tmp_path.iterdir()
    )  # no half-written entry left
