"""Figures of the stability and mask analyses, drawn with matplotlib's object API (Figure + Agg, no pyplot).

Every function takes the rows written to the matching CSV, averages over trials (error bars or bands span
min..max over trials when there is more than one) and writes one PNG atomically.
"""

from __future__ import annotations

import io
import math
from collections import defaultdict
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter, NullLocator

from ticketlab.lottery.keys import DENSE
from ticketlab.lottery.variants import variants_where
from ticketlab.store import atomic_write_bytes

MAX_LEVEL_PANELS = 4  # interpolation figure: dense network plus up to 3 subnetworks (the CSV has them all)
MAX_LEVEL_LINES = 6  # barrier-vs-rewind figure
SPLITS = (("train", "Train"), ("test", "Test"))


def draw_stability_figures(
    rows: Sequence[Mapping], interpolation_rows: Sequence[Mapping], out_dir: Path, title: str | None = None
) -> dict[str, Path]:
    """The three stability figures in `out_dir`: interpolation.png, barrier_vs_rewind.png, stability_distances.png."""
    out_dir = Path(out_dir)
    return {
        "interpolation_png": draw_interpolation(interpolation_rows, out_dir / "interpolation.png", title=title),
        "barrier_png": draw_barrier_vs_rewind(rows, out_dir / "barrier_vs_rewind.png", title=title),
        "distances_png": draw_distances(rows, out_dir / "stability_distances.png", title=title),
    }


def draw_interpolation(rows: Sequence[Mapping], path: Path, title: str | None = None) -> Path:
    """Error (%) vs interpolation coefficient: a row of panels per level (train, test), a line per rewind step."""
    levels = _pick_levels(rows, MAX_LEVEL_PANELS)
    steps = sorted({int(row["rewind_step"]) for row in rows})
    colours = _step_colours(steps)
    fig = Figure(figsize=(11.0, 3.2 * max(len(levels), 1) + 0.9), layout="constrained")
    FigureCanvasAgg(fig)
    axes = np.atleast_2d(fig.subplots(max(len(levels), 1), 2, squeeze=False))
    for row_axes, level in zip(axes, levels):
        level_rows = [row for row in rows if int(row["level"]) == level]
        for ax, (split, split_name) in zip(row_axes, SPLITS):
            for step in steps:
                alphas, mean, low, high = _aggregate(
                    (r for r in level_rows if int(r["rewind_step"]) == step), "alpha", f"{split}_error", scale=100.0)
                if not alphas:
                    continue
                ax.plot(alphas, mean, color=colours[step], marker="o", markersize=2.5, linewidth=1.6,
                        label=_step_label(step))
                if np.any(high > low):
                    ax.fill_between(alphas, low, high, color=colours[step], alpha=0.15, linewidth=0)
            ax.set_title(f"{_level_label(level_rows)}: {split_name.lower()} error", fontsize=10)
            ax.set_xlabel("Interpolation coefficient α  (0: copy A, 1: copy B)")
            ax.set_ylabel(f"{split_name} error (%)")
            ax.set_xlim(0, 1)
            ax.grid(True, alpha=0.35)
    _legend(fig, axes.flat, "rewind step k")
    fig.suptitle(_heading("Error along the linear path between two copies trained from W_k", title, rows),
                 fontsize=11)
    return _save(fig, path)


def draw_barrier_vs_rewind(rows: Sequence[Mapping], path: Path, title: str | None = None) -> Path:
    """Error barrier (percentage points) vs rewind step: train and test panels, a line per level."""
    levels = _pick_levels(rows, MAX_LEVEL_LINES)
    colours = _level_colours(levels)
    fig = Figure(figsize=(11.0, 4.4), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2)
    steps = sorted({int(row["rewind_step"]) for row in rows})
    for ax, (split, split_name) in zip(axes, SPLITS):
        for level in levels:
            level_rows = [row for row in rows if int(row["level"]) == level]
            x, mean, low, high = _aggregate(level_rows, "rewind_step", f"{split}_barrier", scale=100.0)
            ax.errorbar(x, mean, yerr=_yerr(mean, low, high), color=colours[level], marker="o", markersize=4,
                        linewidth=2.0 if level == 0 else 1.5, capsize=3, label=_level_label(level_rows))
        ax.axhline(0.0, color="black", linewidth=0.8)
        _step_axis(ax, steps)
        ax.set_ylabel(f"{split_name} error barrier (percentage points)")
        ax.set_title(f"Instability ({split_name.lower()}): max error on the path − mean of the ends", fontsize=10)
        ax.grid(True, alpha=0.35)
    _legend(fig, axes, None, columns=3)
    fig.suptitle(_heading("Instability vs rewind point", title, rows), fontsize=11)
    return _save(fig, path)


def draw_distances(rows: Sequence[Mapping], path: Path, title: str | None = None) -> Path:
    """Relative L2 distance vs weights remaining: data-order and pruning stability panels, a line per rewind step."""
    steps = sorted({int(row["rewind_step"]) for row in rows})
    colours = _step_colours(steps)
    fig = Figure(figsize=(11.0, 4.4), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2)
    panels = (
        ("data_order_relative", "Data-order stability: copy A vs copy B"),
        ("pruning_relative", "Pruning stability: subnetwork vs masked full network"),
    )
    percents = [float(row["weights_remaining_percent"]) for row in rows]
    for ax, (column, panel_title) in zip(axes, panels):
        for step in steps:
            step_rows = [r for r in rows if int(r["rewind_step"]) == step and _number(r.get(column)) is not None]
            x, mean, low, high = _aggregate(step_rows, "weights_remaining_percent", column)
            if x:
                ax.errorbar(x, mean, yerr=_yerr(mean, low, high), color=colours[step], marker="o", markersize=4,
                            linewidth=1.6, capsize=3, label=_step_label(step))
        if not ax.lines:
            ax.text(0.5, 0.5, "needs pruned levels", transform=ax.transAxes, ha="center", va="center", color="gray")
        _percent_axis(ax, percents)
        ax.set_ylabel("‖w_A − w_B‖ / mean(‖w_A‖, ‖w_B‖)")
        ax.set_title(panel_title, fontsize=10)
        ax.grid(True, alpha=0.35)
    _legend(fig, axes, "rewind step k")
    fig.suptitle(_heading("Distance between trained weights (masked prunable weights)", title, rows), fontsize=11)
    return _save(fig, path)


def draw_mask_overlap(rows: Sequence[Mapping], path: Path, title: str | None = None) -> Path:
    """Jaccard overlap (all layers pooled) vs weights remaining, with the random-mask chance level dashed."""
    pooled = [row for row in rows if row["layer"] == "all"]
    fig = Figure(figsize=(8.5, 5.0), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    groups: dict[tuple[str, str], list[Mapping]] = defaultdict(list)
    for row in pooled:
        if row["kind"] == "between_trials":
            groups[("between_trials", row["variant_a"])].append(row)
        elif row["kind"] == "iterative_vs_oneshot":
            groups[("iterative_vs_oneshot", "")].append(row)
    colours = colormaps["tab10"]
    for index, ((kind, variant), group) in enumerate(sorted(groups.items())):
        label = f"between trials, {variant}" if kind == "between_trials" else "iterative vs one-shot, same trial"
        x, mean, low, high = _aggregate(group, "weights_remaining_percent_a", "jaccard")
        ax.errorbar(x, mean, yerr=_yerr(mean, low, high), color=colours(index % 10), marker="o", markersize=4,
                    capsize=3, linewidth=1.6, label=label)
    if groups:
        compared = [row for group in groups.values() for row in group]
        x, chance, _, _ = _aggregate(compared, "weights_remaining_percent_a", "chance_jaccard")
        ax.plot(x, chance, color="gray", linestyle="--", linewidth=1.2,
                label="chance: random masks, same per-layer counts")
    else:
        ax.text(0.5, 0.5, "needs two trials or one-shot masks", transform=ax.transAxes, ha="center", color="gray")
    _percent_axis(ax, [float(r["weights_remaining_percent_a"]) for r in pooled] or [100.0])
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("Jaccard overlap |A ∩ B| / |A ∪ B|")
    ax.grid(True, alpha=0.35)
    _legend(fig, [ax], None, columns=2)
    fig.suptitle(_heading("Mask overlap (all layers pooled)", title, rows, trials_key=None), fontsize=11)
    return _save(fig, path)


def draw_layer_remaining(rows: Sequence[Mapping], path: Path, title: str | None = None) -> Path:
    """Per-layer remaining fraction (%) vs overall weights remaining, one panel per mask-owning variant."""
    owners = variants_where(family="imp", same_mask=False)  # = ticketlab.analysis.masks.mask_owners() (no torch)
    variants = [v for v in owners if any(row["variant"] == v for row in rows)] or [DENSE]
    fig = Figure(figsize=(5.2 * len(variants) + 0.6, 4.6), layout="constrained")
    FigureCanvasAgg(fig)
    axes = np.atleast_1d(fig.subplots(1, len(variants), squeeze=False)[0])
    layers = list(dict.fromkeys(row["layer"] for row in rows))
    colours = colormaps["tab10"]
    for ax, variant in zip(axes, variants):
        variant_rows = [row for row in rows if row["variant"] in (variant, DENSE)]
        for index, layer in enumerate(layers):
            x, mean, low, high = _aggregate((r for r in variant_rows if r["layer"] == layer),
                                            "weights_remaining_percent", "remaining_fraction", scale=100.0)
            ax.errorbar(x, mean, yerr=_yerr(mean, low, high), color=colours(index % 10), marker="o", markersize=3,
                        capsize=2, linewidth=1.5, label=layer)
        _percent_axis(ax, [float(r["weights_remaining_percent"]) for r in variant_rows] or [100.0])
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 3.0, 5.0, 7.0)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: _format_percent(value)))
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_ylabel("Layer weights remaining (%)")
        ax.set_title(variant, fontsize=10)
        ax.grid(True, which="major", alpha=0.35)
    _legend(fig, axes, "layer")
    fig.suptitle(_heading("Per-layer remaining weights", title, rows), fontsize=11)
    return _save(fig, path)


# --- helpers -------------------------------------------------------------------------------------


def _number(value) -> float | None:
    if value is None or value == "":
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _aggregate(rows: Iterable[Mapping], x_key: str, y_key: str, scale: float = 1.0):
    """(x values, mean, min, max) of y over rows sharing an x (trials), sorted by x; missing values skipped."""
    groups: dict[float, list[float]] = defaultdict(list)
    for row in rows:
        y = _number(row.get(y_key))
        if y is not None:
            groups[float(row[x_key])].append(y * scale)
    xs = sorted(groups)
    return (xs, np.array([np.mean(groups[x]) for x in xs]), np.array([min(groups[x]) for x in xs]),
            np.array([max(groups[x]) for x in xs]))


def _yerr(mean, low, high):
    if len(mean) == 0 or not np.any(high > low):
        return None
    return np.vstack([mean - low, high - mean])


def _pick_levels(rows: Sequence[Mapping], limit: int) -> list[int]:
    """Level 0 and up to `limit` - 1 pruned levels spread evenly, always including the sparsest."""
    levels = sorted({int(row["level"]) for row in rows})
    if len(levels) <= limit:
        return levels
    pruned = levels[1:]
    picks = np.unique(np.round(np.linspace(0, len(pruned) - 1, limit - 1)).astype(int))
    return [levels[0]] + [pruned[i] for i in picks]


def _level_label(level_rows: Sequence[Mapping]) -> str:
    if not level_rows:
        return "?"
    row = level_rows[0]
    percent = _format_percent(float(row["weights_remaining_percent"]))
    if int(row["level"]) == 0:
        return "dense network (100%)"
    return f"{row['variant']} level {row['level']} ({percent}%)"


def _step_label(step: int) -> str:
    return f"k = {step} it"


def _step_colours(steps: Sequence[int]) -> dict[int, tuple]:
    cmap = colormaps["viridis"]
    return {step: cmap(0.85 * index / max(len(steps) - 1, 1)) for index, step in enumerate(steps)}


def _level_colours(levels: Sequence[int]) -> dict[int, tuple]:
    cmap = colormaps["plasma"]
    return {level: ("black" if index == 0 else cmap(0.8 * (index - 1) / max(len(levels) - 2, 1)))
            for index, level in enumerate(levels)}


def _step_axis(ax, steps: Sequence[int]) -> None:
    """Rewind steps on a symmetric-log axis so that k = 0 sits beside small positive k."""
    positive = [s for s in steps if s > 0]
    if positive:
        ax.set_xscale("symlog", linthresh=min(positive), linscale=0.5)
    ax.set_xticks(list(steps), [str(s) for s in steps])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("Rewind step k (iterations)")


def _percent_axis(ax, percents: Sequence[float]) -> None:
    """Weights remaining on a log axis decreasing left to right (the dense network on the left)."""
    finite = [p for p in percents if p > 0]
    high, low = max(finite), min(finite)
    ax.set_xscale("log")
    ax.set_xlim(high * 1.25, low / 1.25)
    ticks = sorted(set(finite), reverse=True)
    if len(ticks) > 8:
        ticks = [ticks[i] for i in np.unique(np.round(np.linspace(0, len(ticks) - 1, 8)).astype(int))]
    ax.set_xticks(ticks, [_format_percent(t) for t in ticks])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("Weights remaining (%)")


def _format_percent(value: float) -> str:
    if value >= 99.95:
        return f"{value:.0f}"
    if value >= 1:
        return f"{value:.1f}"
    return f"{value:.2g}"


def _legend(fig: Figure, axes, title: str | None, columns: int = 6) -> None:
    handles, labels = [], []
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            if label not in labels:
                handles.append(handle)
                labels.append(label)
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncol=min(len(handles), columns), frameon=False,
                   fontsize=9, title=title, title_fontsize=9)


def _heading(text: str, title: str | None, rows: Sequence[Mapping], trials_key: str | None = "trial") -> str:
    parts = [text]
    if trials_key is not None:
        trials = {row[trials_key] for row in rows if trials_key in row}
        if len(trials) > 1:
            parts.append(f"mean of {len(trials)} trials, bars min–max")
    heading = "; ".join(parts)
    return f"{title}\n{heading}" if title else heading


def _save(fig: Figure, path: Path) -> Path:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=130)
    atomic_write_bytes(Path(path), buffer.getvalue())
    return Path(path)
