"""Figures speak one language: accuracies in percent (cells, colour bar, axes), legends inside the figure,
trial counts in the right number. Each figure is caught as it is saved and its drawn numbers read back."""

from __future__ import annotations

import json

import pytest

from ticketlab.report import cheap_tickets, curves, transfer


@pytest.fixture
def saved(monkeypatch):
    """The Figure objects the report modules save (their files are still written)."""
    figures = []
    for module in (transfer, curves, cheap_tickets):
        real = module.save_figure

        def capture(figure, stem, real=real):
            figures.append(figure)
            return real(figure, stem)

        monkeypatch.setattr(module, "save_figure", capture)
    return figures


MATRIX = {"sources": ["a", "b"], "targets": ["a", "b"],
          "cells": {("a", "a"): {"value": 0.912, "weights_remaining_percent": 13.4, "trials": 2},
                    ("a", "b"): {"value": 0.853, "weights_remaining_percent": 13.4, "trials": 2},
                    ("b", "a"): {"value": 0.871, "weights_remaining_percent": 13.4, "trials": 2}}}


def test_the_transfer_matrix_colour_bar_is_in_percent_like_its_cells(tmp_path, saved):
    transfer.write_matrix_figure(MATRIX, tmp_path / "matrix", 13.0)
    (figure,) = saved
    heat, colour_bar = figure.axes
    image = heat.images[0]
    assert (float(image.get_array().min()), float(image.get_array().max())) == pytest.approx((85.3, 91.2))
    assert image.get_clim() == pytest.approx((85.3, 91.2))  # the colour bar's range: the cells' percents
    assert colour_bar.get_ylabel() == "test accuracy (%)"
    assert sorted(text.get_text().split("\n")[0] for text in heat.texts) == ["85.3", "87.1", "91.2"]
    assert "(%)" in heat.get_title()


def test_the_transfer_figure_is_in_percent(tmp_path, saved):
    rows = [{"variant": variant, "source": "s", "source_data": "s data", "target": "t", "trial": trial,
             "level": level, "weights_remaining_percent": remaining,
             "early_stop_test_accuracy": accuracy + 0.01 * trial}
            for trial in (0, 1)
            for level, remaining, accuracy in ((0, 100.0, 0.90), (1, 50.0, 0.85))
            for variant in ("transferred", "target_found", "random_ticket", "dense")
            if not (variant == "dense" and level)]
    transfer.write_transfer_figure(rows, tmp_path / "transfer")
    (figure,) = saved
    axes = figure.axes[0]
    assert axes.get_ylabel() == "test accuracy at early stop (%)"
    lines = [line for line in axes.get_lines() if len(line.get_ydata()) == 2 and line.get_linestyle() == "-"]
    assert lines and all(list(line.get_ydata()) == pytest.approx([90.5, 85.5]) for line in lines)
    dense = [line for line in axes.get_lines() if line.get_linestyle() == "--"]
    assert list(dense[0].get_ydata()) == pytest.approx([90.5, 90.5])  # the dense mean, in percent


def _job(run_dir, trial, level, variant):
    job = run_dir / f"trial_{trial}" / f"level_{level:02d}" / variant
    job.mkdir(parents=True)
    rows = [{"step": step, "val_accuracy": 0.1 * step + 0.01 * level} for step in (1, 2, 3)]
    (job / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))


VARIANTS = ("iterative_reset", "iterative_reinit", "oneshot_reset", "oneshot_reinit", "random_pruning", "finetune")


@pytest.mark.parametrize("levels", [1, 3])
def test_the_learning_curve_legend_fits_in_the_figure(tmp_path, saved, levels):
    _job(tmp_path, 0, 0, "dense")
    for level in range(1, levels + 1):
        for variant in VARIANTS:
            _job(tmp_path, 0, level, variant)
    curves.draw_learning_curves(tmp_path, tmp_path / "curves", {level: 100 * 0.8 ** level for level in range(4)})
    (figure,) = saved
    renderer = figure.canvas.get_renderer()
    figure.draw(renderer)  # the layout the saved file has
    (legend,) = figure.legends
    box = legend.get_window_extent(renderer)
    assert box.x0 >= 0 and box.x1 <= figure.bbox.width, (box, figure.bbox)
    assert len(legend.get_texts()) == 1 + len(VARIANTS)  # every entry, none cut off
    assert figure._suptitle.get_text().endswith("mean of 1 trial")


def test_one_trial_is_singular_in_the_at_init_figure(tmp_path, saved):
    from ticketlab.report.results import METRIC_COLUMNS, summarize_results

    rows = [{"variant": variant, "trial": 0, "level": level, "weights_remaining_percent": remaining,
             "metric": "accuracy", **{column: accuracy for column in METRIC_COLUMNS}}
            for variant in ("iterative_reset", "random_pruning", "snip")
            for level, remaining, accuracy in ((0, 100.0, 0.9), (1, 50.0, 0.8))]
    cheap_tickets.draw_at_init_figure(summarize_results(rows), tmp_path / "at_init", title="run")
    (figure,) = saved
    assert figure._suptitle.get_text() == "run: mean of 1 trial, error bars min-max"
