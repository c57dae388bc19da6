"""The budget view of a run: the early-stop metric against the total training cost that led to each result
(results.csv's train_flops_total and train_steps_total, `ticketlab.lottery.training_cost`), on a log axis, one line
per variant through its levels, the dense network as one point. It answers whether a method's accuracy is worth its
training: an IMP ticket at level L paid for L + 1 trainings, a method that prunes while it trains for one.
Agg canvas, PNG + SVG, written atomically; no torch."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import EngFormatter, LogLocator

from ticketlab.lottery.variants import variant_label, variant_style, winning_ticket
from ticketlab.report.figures import _style, _trial_phrase, save_figure
from ticketlab.report.results import ordered_variants, summary_metric

# (column, axis label) of each panel, drawn when the run has its numbers
COST_PANELS = (("train_flops_total", "training FLOPs, every round that led to the result (log)"),
               ("train_steps_total", "optimizer steps, every round that led to the result (log)"))
METRIC_COLUMN = "early_stop_test_metric"


def _finite(entry: Mapping[str, Any], column: str) -> bool:
    value = entry.get(f"{column}_mean", math.nan)
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def has_training_cost(summary: Sequence[Mapping[str, Any]]) -> bool:
    """Whether the run's results carry a training cost (files written before the cost columns do not)."""
    return any(_finite(entry, COST_PANELS[-1][0]) for entry in summary)


def _errorbar(ax, points: list, column: str, scale: float, style: tuple[str, str, str], bold: bool, label: str):
    x = np.array([float(e[f"{column}_mean"]) for e in points])
    mean = np.array([float(e[f"{METRIC_COLUMN}_mean"]) for e in points]) * scale
    low = np.array([float(e[f"{METRIC_COLUMN}_min"]) for e in points]) * scale
    high = np.array([float(e[f"{METRIC_COLUMN}_max"]) for e in points]) * scale
    x_low = np.array([float(e[f"{column}_min"]) for e in points])
    x_high = np.array([float(e[f"{column}_max"]) for e in points])
    colour, marker, linestyle = style
    return ax.errorbar(x, mean, yerr=np.vstack([mean - low, high - mean]),
                       xerr=np.vstack([x - x_low, x_high - x]) if np.any(x_high > x_low) else None,
                       color=colour, marker=marker, linestyle=linestyle, linewidth=2.2 if bold else 1.4,
                       markersize=5, capsize=3, elinewidth=1, alpha=0.95, label=label, zorder=3 if bold else 2)


def build_cost_figure(summary: Sequence[Mapping[str, Any]], title: str | None = None) -> Figure:
    """Build (without saving) the budget figure; see :func:`draw_cost_figure`."""
    metric = summary_metric(summary)
    scale = 100.0 if metric.percent else 1.0
    panels = [(column, label) for column, label in COST_PANELS if any(_finite(e, column) for e in summary)]
    fig = Figure(figsize=(6.0 * len(panels), 5.6), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    handles: dict[str, Any] = {}
    for ax, (column, axis_label) in zip(axes, panels):
        dense = [e for e in summary if int(e["level"]) == 0 and _finite(e, column)][:1]  # every variant repeats it
        if dense:
            handles["dense network"] = _errorbar(ax, dense, column, scale, ("black", "*", "none"), True,
                                                 "dense network")
        extra = 0
        for variant in ordered_variants(summary):
            points = sorted((e for e in summary if e["variant"] == variant and int(e["level"]) > 0
                             and _finite(e, column) and math.isfinite(float(e[f"{METRIC_COLUMN}_mean"]))),
                            key=lambda e: int(e["level"]))
            style = _style(variant, extra)
            extra += variant_style(variant) is None
            if points:
                handles[variant_label(variant)] = _errorbar(ax, points, column, scale, style,
                                                            variant == winning_ticket(), variant_label(variant))
        ax.set_xscale("log")
        ax.xaxis.set_minor_locator(LogLocator(subs=(2.0, 5.0)))  # 1, 2, 5, 10, 20, ...: readable between decades
        for axis_formatter in (ax.xaxis.set_major_formatter, ax.xaxis.set_minor_formatter):
            axis_formatter(EngFormatter(sep=""))  # 20, 5k, 3M, 1.2G
        ax.set_xlabel(axis_label)
        ax.set_ylabel(f"Early-stop {metric.axis_label()}")
        if metric.log_scale:
            ax.set_yscale("log")
        ax.grid(True, which="major", alpha=0.35)
    fig.suptitle(f"{title or 'Lottery ticket experiment'}: {metric.label} against training cost, mean of "
                 f"{_trial_phrase(summary)}, error bars min–max over trials", fontsize=12)
    if handles:
        fig.legend(list(handles.values()), list(handles), loc="outside lower center",
                   ncol=min(3 if len(panels) > 1 else 2, len(handles)), frameon=False, fontsize=9)
    return fig


def draw_cost_figure(summary: Sequence[Mapping[str, Any]], path_stem: str | Path, title: str | None = None
                     ) -> list[Path]:
    """Draw the early-stop metric against total training cost (log x): a panel for training FLOPs when the run
    has them and one for optimizer steps, one line per variant through its levels (level 1 first), the dense
    network as a black star; error bars min..max over trials (in x too where the cost differs between trials).
    Returns the PNG and SVG paths."""
    return save_figure(build_cost_figure(summary, title=title), path_stem)
