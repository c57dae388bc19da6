"""Ticket-transfer figures (Morcos et al., 2019, Figures 2-4 style): target accuracy against weights remaining,
one line per ticket source (each transferred source, the target's own tickets, random tickets, the dense
network), and a source-by-target matrix as a heat map. Agg canvas, no pyplot; needs only numpy and matplotlib."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator

from ticketlab.report.figures import format_percent, save_figure

_STYLES = {"target_found": ("tab:blue", "o", "-"), "random_ticket": ("tab:gray", "D", ":"),
           "dense": ("black", "", "--")}
_SOURCE_COLOURS = ("tab:red", "tab:green", "tab:purple", "tab:orange", "tab:brown", "tab:pink", "tab:olive")


def curve_label(row: Mapping[str, Any], several_sources: bool) -> str:
    """The legend entry of a row's line: 'transferred from <source data>' per source, else the control's name."""
    variant = row["variant"]
    if variant == "transferred":
        return f"transferred from {row['source_data']}"
    if variant == "random_ticket":
        return "random ticket" + (f" ({row['source_data']} sparsity)" if several_sources else "")
    return {"target_found": "target's own ticket", "dense": "dense (target)"}.get(variant, variant)


def summarize_curves(rows: Sequence[Mapping[str, Any]], metric: str = "early_stop_test_accuracy") -> dict:
    """label -> (variant, [(mean weights remaining %, mean, min, max, trials)] by level)."""
    several = len({row["source"] for row in rows if row["variant"] == "transferred"}) > 1
    grouped: dict[str, dict[int, list]] = {}
    variants: dict[str, str] = {}
    for row in rows:
        label = curve_label(row, several)
        variants[label] = row["variant"]
        grouped.setdefault(label, {}).setdefault(int(row["level"]), []).append(row)
    curves = {}
    for label, by_level in grouped.items():
        points = []
        for level in sorted(by_level):
            entries = by_level[level]
            values = np.array([float(entry[metric]) for entry in entries])
            remaining = float(np.mean([float(entry["weights_remaining_percent"]) for entry in entries]))
            points.append((remaining, float(values.mean()), float(values.min()), float(values.max()), len(values)))
        curves[label] = (variants[label], points)
    return curves


def write_transfer_figure(rows: Sequence[Mapping[str, Any]], stem: Path, title: str | None = None,
                          metric: str = "early_stop_test_accuracy") -> list[Path]:
    """Draw `stem`.png and `stem`.svg: mean `metric` (bars: min..max over trials; accuracies in percent, as in
    every report figure) against weights remaining (log axis, 100% on the left); the dense network as a horizontal
    dashed line. Returns the paths."""
    curves = summarize_curves(rows, metric)
    scale = 100.0 if "accuracy" in metric else 1.0  # fractions in transfer.csv, percent on the figure
    figure = Figure(figsize=(7.0, 4.4), dpi=150)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    all_x: list[float] = []
    source_index = 0
    for label, (variant, points) in sorted(curves.items(), key=lambda item: _order(item[1][0], item[0])):
        if variant == "transferred":
            colour, marker, style = _SOURCE_COLOURS[source_index % len(_SOURCE_COLOURS)], "s", "-"
            source_index += 1
        else:
            colour, marker, style = _STYLES.get(variant, ("tab:cyan", "x", "-"))
        x = np.array([point[0] for point in points])
        mean = np.array([point[1] for point in points]) * scale
        if variant == "dense":
            axes.axhline(mean.mean(), color=colour, linestyle=style, linewidth=1.2, label=label)
            continue
        low = mean - np.array([point[2] for point in points]) * scale
        high = np.array([point[3] for point in points]) * scale - mean
        axes.errorbar(x, mean, yerr=[low, high], color=colour, marker=marker, linestyle=style, linewidth=1.4,
                      markersize=4, capsize=2.5, label=label)
        all_x.extend(x.tolist())
    axes.set_xscale("log")
    if all_x:
        ticks: list[float] = []
        for value in sorted(set(all_x), reverse=True):  # one tick per cluster: a ticket and its control sit ~1% apart
            if not ticks or value < ticks[-1] / 1.05:
                ticks.append(value)
        step = max(1, len(ticks) // 8)
        axes.set_xticks(ticks[::step])
        axes.set_xticklabels([format_percent(tick) for tick in ticks[::step]])
        axes.xaxis.set_minor_locator(NullLocator())
        axes.set_xlim(max(all_x) * 1.15, min(all_x) / 1.15)
    axes.set_xlabel("weights remaining (%)")
    axes.set_ylabel("test accuracy at early stop (%)" if metric == "early_stop_test_accuracy"
                    else metric + (" (%)" if scale == 100.0 else ""))
    target = next(iter({row["target"] for row in rows}), "")
    axes.set_title(title or f"tickets trained on {target}")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=8, loc="lower left")
    figure.tight_layout()
    return save_figure(figure, stem)


def _order(variant: str, label: str) -> tuple[int, str]:
    return ({"transferred": 0, "target_found": 1, "random_ticket": 2, "dense": 3}.get(variant, 4), label)


def write_matrix_figure(matrix: Mapping[str, Any], stem: Path, at_percent: float) -> list[Path]:
    """A heat map of `matrix` (from `ticketlab.lottery.transfer_results.transfer_matrix`): rows sources, columns
    targets, each cell the mean accuracy (%, as its colour and the colour bar) and the weights remaining it was
    read at."""
    sources, targets = matrix["sources"], matrix["targets"]
    values = np.full((len(sources), len(targets)), np.nan)
    for (source, target), cell in matrix["cells"].items():
        values[sources.index(source), targets.index(target)] = 100 * cell["value"]  # percent, like the cells
    figure = Figure(figsize=(1.8 + 2.0 * len(targets), 1.2 + 0.8 * len(sources)), dpi=150)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    image = axes.imshow(values, cmap="viridis", aspect="auto")
    for (source, target), cell in matrix["cells"].items():
        axes.text(targets.index(target), sources.index(source),
                  f"{100 * cell['value']:.1f}\n({format_percent(cell['weights_remaining_percent'])}%)",
                  ha="center", va="center", fontsize=8, color="white")
    axes.set_xticks(range(len(targets)))
    axes.set_xticklabels(targets, fontsize=8)
    axes.set_yticks(range(len(sources)))
    axes.set_yticklabels(sources, fontsize=8)
    axes.set_xlabel("target")
    axes.set_ylabel("ticket source")
    axes.set_title(f"test accuracy (%) at ~{format_percent(at_percent)}% weights remaining", fontsize=9)
    figure.colorbar(image, ax=axes, label="test accuracy (%)")
    figure.tight_layout()
    return save_figure(figure, stem)
