"""Lottery-ticket figure (Frankle & Carbin, Figures 3/4 style) rendered with Agg.

Uses ``matplotlib.figure.Figure`` with an explicit Agg canvas, so neither pyplot
nor the caller's global matplotlib backend/state is touched.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter, NullLocator

from ticketlab.lottery.variants import variant_label, variant_style, winning_ticket
from ticketlab.report.results import ordered_variants, summary_metric, with_dense_level
from ticketlab.store import atomic_write_bytes

# Styles of unregistered variants (the registered ones declare theirs: `Variant.style`).
_EXTRA_COLOURS: tuple[str, ...] = ("tab:pink", "tab:gray", "tab:olive", "tab:cyan", "black")
_EXTRA_MARKERS: tuple[str, ...] = ("X", "*", "h", "<", ">", "p")

MAX_X_TICKS = 8


def format_percent(value: float) -> str:
    """Compact tick label for a weights-remaining percentage (100, 51.3, 7.0, 0.36)."""
    if value >= 99.95:
        return f"{value:.0f}"
    if value >= 1:
        return f"{value:.1f}"
    return f"{value:.2g}"


def _style(variant: str, extra_index: int) -> tuple[str, str, str]:
    if variant_style(variant) is not None:
        return variant_style(variant)
    return (
        _EXTRA_COLOURS[extra_index % len(_EXTRA_COLOURS)],
        _EXTRA_MARKERS[extra_index % len(_EXTRA_MARKERS)],
        "-",
    )


def _tick_positions(summary: Sequence[Mapping[str, Any]]) -> list[float]:
    """One tick per level at its mean percent (over variants), thinned to MAX_X_TICKS."""
    by_level: dict[int, list[float]] = {}
    for entry in summary:
        x = float(entry["weights_remaining_percent"])
        if math.isfinite(x) and x > 0:
            by_level.setdefault(int(entry["level"]), []).append(x)
    ticks = sorted((float(np.mean(v)) for v in by_level.values()), reverse=True)
    # Merge ticks whose labels would coincide (e.g. one-shot and iterative at the same percent).
    unique: list[float] = []
    for x in ticks:
        if not unique or format_percent(x) != format_percent(unique[-1]):
            unique.append(x)
    if len(unique) > MAX_X_TICKS:
        keep = np.unique(np.round(np.linspace(0, len(unique) - 1, MAX_X_TICKS)).astype(int))
        unique = [unique[i] for i in keep]
    return unique


def _setup_x_axis(ax: Axes, ticks: Sequence[float], lo: float, hi: float) -> None:
    ax.set_xscale("log")
    # Decreasing left to right: dense network (100%) on the left.
    ax.set_xlim(hi * 1.15, lo / 1.15)
    ax.set_xticks(list(ticks), [format_percent(t) for t in ticks])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("Weights remaining (%)")
    ax.grid(True, which="major", alpha=0.35)


def _trial_phrase(summary: Sequence[Mapping[str, Any]]) -> str:
    counts = sorted({int(e["n"]) for e in summary})
    if not counts:
        return "no trials"
    if len(counts) == 1:
        return f"{counts[0]} trial{'s' if counts[0] != 1 else ''}"
    return f"{counts[0]}–{counts[-1]} trials"


def build_lottery_figure(summary: Sequence[Mapping[str, Any]], title: str | None = None) -> Figure:
    """Build (without saving) the two-panel figure; see :func:`draw_lottery_figure`."""
    filled = with_dense_level(summary)
    metric = summary_metric(filled)
    fig = Figure(figsize=(12.0, 5.6), layout="constrained")
    FigureCanvasAgg(fig)
    ax_acc, ax_iter = fig.subplots(1, 2)
    panels = (
        (ax_acc, "early_stop_test_metric", 100.0 if metric.percent else 1.0,
         f"Early-stop {metric.axis_label()}"),
        (ax_iter, "early_stop_iteration", 1.0, "Early-stop iteration"),
    )
    handles = []
    labels = []
    xs_all: list[float] = []
    extra = 0
    for variant in ordered_variants(filled):
        entries = sorted(
            (e for e in filled if e["variant"] == variant),
            key=lambda e: (-float(e["weights_remaining_percent"]), int(e["level"])),
        )
        colour, marker, linestyle = _style(variant, extra)
        if variant_style(variant) is None:
            extra += 1
        handle = None
        for ax, column, scale, _ in panels:
            pts = [
                e
                for e in entries
                if math.isfinite(float(e["weights_remaining_percent"]))
                and float(e["weights_remaining_percent"]) > 0
                and math.isfinite(float(e[f"{column}_mean"]))
            ]
            if not pts:
                continue
            x = np.array([float(e["weights_remaining_percent"]) for e in pts])
            mean = np.array([float(e[f"{column}_mean"]) for e in pts]) * scale
            lo = np.array([float(e[f"{column}_min"]) for e in pts]) * scale
            hi = np.array([float(e[f"{column}_max"]) for e in pts]) * scale
            multi = np.array([int(e["n"]) > 1 for e in pts])
            yerr = np.vstack([np.where(multi, mean - lo, 0.0), np.where(multi, hi - mean, 0.0)])
            container = ax.errorbar(
                x,
                mean,
                yerr=yerr if multi.any() else None,
                color=colour,
                marker=marker,
                linestyle=linestyle,
                linewidth=2.2 if variant == winning_ticket() else 1.5,
                markersize=5,
                capsize=3,
                elinewidth=1,
                alpha=0.95,
                zorder=3 if variant == winning_ticket() else 2,
            )
            xs_all.extend(x.tolist())
            if handle is None:
                handle = container
        if handle is not None:
            handles.append(handle)
            labels.append(variant_label(variant))

    if xs_all:
        ticks = _tick_positions(filled)
        for ax, _, _, ylabel in panels:
            _setup_x_axis(ax, ticks, min(xs_all), max(xs_all))
            ax.set_ylabel(ylabel)
    else:
        for ax, _, _, ylabel in panels:
            ax.set_ylabel(ylabel)
            ax.grid(True, alpha=0.35)
    ax_iter.ticklabel_format(axis="y", style="plain", useOffset=False)
    if metric.log_scale:
        ax_acc.set_yscale("log")
    ax_acc.set_title(f"{metric.label[0].upper()}{metric.label[1:]} at early stopping")
    ax_iter.set_title(f"Early-stopping iteration ({metric.early_stop.replace('minimum', 'min.')})")

    heading = title or "Lottery ticket experiment"
    fig.suptitle(
        f"{heading}: mean of {_trial_phrase(filled)}, error bars min–max over trials",
        fontsize=12,
    )
    if handles:
        fig.legend(
            handles,
            labels,
            loc="outside lower center",
            ncol=min(3, len(handles)),
            frameon=False,
            fontsize=10,
        )
    return fig


def draw_lottery_figure(
    summary: Sequence[Mapping[str, Any]],
    path_stem: str | os.PathLike[str],
    title: str | None = None,
) -> list[Path]:
    """Draw the two lottery-ticket panels side by side and save PNG (dpi 150) and SVG.

    Left: the early-stop test metric (accuracy in %, perplexity on a log axis, ...) vs weights remaining (%); right: early-stop
    iteration vs weights remaining (%). The x axis is logarithmic and decreasing
    (100% on the left), one line per variant, error bars span min..max over trials
    when a point has more than one trial. Variants lacking a level-0 point get the
    dense point (see :func:`ticketlab.report.results.with_dense_level`).

    Returns ``[Path("{path_stem}.png"), Path("{path_stem}.svg")]``; files are written atomically.
    """
    return save_figure(build_lottery_figure(summary, title=title), path_stem)


def save_figure(fig: Figure, path_stem: str | os.PathLike[str]) -> list[Path]:
    """Write `fig` as "{path_stem}.png" (dpi 150) and "{path_stem}.svg" (no date, so reruns give the same bytes),
    each atomically; returns both paths. Every report figure is saved this way."""
    stem = Path(path_stem)
    paths = [stem.with_name(stem.name + ".png"), stem.with_name(stem.name + ".svg")]
    for path, options in zip(paths, ({"dpi": 150}, {"metadata": {"Date": None}})):
        buffer = io.BytesIO()
        fig.savefig(buffer, format=path.suffix[1:], **options)
        atomic_write_bytes(path, buffer.getvalue())
    return paths
