"""Figures for cheaper tickets: pruning at initialization against IMP and random pruning, and the early-bird
mask-distance curve with its detection points. Agg canvas, PNG + SVG, written atomically; no torch."""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ticketlab.errors import TicketlabError
from ticketlab.lottery.variants import variant_label, variant_style, variants_where, winning_ticket
from ticketlab.report.figures import _setup_x_axis, _tick_positions, _trial_phrase, save_figure
from ticketlab.report.results import summary_metric, with_dense_level


def at_init_methods() -> tuple[str, ...]:
    """The pruning-at-init methods (the registry's at_init family, less their controls)."""
    return variants_where(family="at_init", control_of=None)


def references() -> tuple[str, ...]:
    """The IMP curves the at-init methods are drawn against: the winning ticket and its random-mask control."""
    ticket = winning_ticket()
    return (ticket, *variants_where(control_of=ticket, same_mask=False))


def has_at_init_variants(summary: Sequence[Mapping[str, Any]]) -> bool:
    return any(str(entry["variant"]) in variants_where(family="at_init") for entry in summary)


def _curve(ax, entries: list, variant: str, column: str, scale: float) -> bool:
    points = sorted((e for e in entries if e["variant"] == variant and math.isfinite(float(e[f"{column}_mean"]))),
                    key=lambda e: -float(e["weights_remaining_percent"]))
    if not points:
        return False
    colour, marker, linestyle = variant_style(variant) or ("black", "o", "-")
    x = np.array([float(e["weights_remaining_percent"]) for e in points])
    mean = np.array([float(e[f"{column}_mean"]) for e in points]) * scale
    low = np.array([float(e[f"{column}_min"]) for e in points]) * scale
    high = np.array([float(e[f"{column}_max"]) for e in points]) * scale
    ax.errorbar(x, mean, yerr=np.vstack([mean - low, high - mean]), color=colour, marker=marker,
                linestyle=linestyle, linewidth=2.2 if variant == winning_ticket() else 1.4, markersize=5, capsize=3,
                elinewidth=1, label=variant_label(variant), zorder=3 if variant == winning_ticket() else 2)
    return True


def draw_at_init_figure(summary: Sequence[Mapping[str, Any]], path_stem: str | Path, title: str = "",
                        column: str = "early_stop_test_metric") -> list[Path]:
    """Accuracy (the run's metric, `column`) against weights remaining: one panel with every at-init method, IMP
    and random pruning, then one panel per method with its shuffled and reinitialized controls. Error bars
    span min..max over trials. Returns the PNG and SVG paths."""
    filled = with_dense_level(summary)
    metric = summary_metric(filled)
    scale = 100.0 if metric.percent else 1.0
    variants = {str(e["variant"]) for e in filled}
    methods = [method for method in at_init_methods() if method in variants]
    panels = [("Pruning at init vs IMP and random", list(references()) + methods)]
    panels += [(f"{variant_label(method)}: sanity controls", [*references(), method, *controls])
               for method in methods for controls in [variants_where(control_of=method)]
               if any(control in variants for control in controls)]
    columns = min(3, len(panels))
    rows = math.ceil(len(panels) / columns)
    fig = Figure(figsize=(5.2 * columns, 4.4 * rows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = np.atleast_1d(fig.subplots(rows, columns, squeeze=False)).ravel()
    xs = [float(e["weights_remaining_percent"]) for e in filled if float(e["weights_remaining_percent"]) > 0]
    ticks = _tick_positions(filled)
    for ax, (heading, names) in zip(axes, panels):
        for variant in names:
            if variant in variants:
                _curve(ax, filled, variant, column, scale)
        _setup_x_axis(ax, ticks, min(xs), max(xs))
        ax.set_ylabel(f"{'Early-stop' if column.startswith('early') else 'Final'} {metric.axis_label()}")
        ax.set_title(heading, fontsize=10)
        ax.legend(fontsize=7, loc="lower left")
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    fig.suptitle(f"{title + ': ' if title else ''}mean of {_trial_phrase(filled)}, error bars min-max", fontsize=11)
    return save_figure(fig, path_stem)


EARLY_BIRD_COLUMNS = {  # column -> 'int' / 'float' (blank allowed: 'int?' / 'float?'), checked on reading
    "early_bird.csv": {"trial": "int", "level": "int", "weights_remaining_percent": "float", "detected": "bool",
                       "detection_step": "int?", "total_steps": "int", "training_saved_percent": "float?"},
    "early_bird_distances.csv": {"trial": "int", "level": "int", "step": "int", "weights_distance": "float?",
                                 "channels_distance": "float?"},
}


def read_early_bird(run_dir: str | Path) -> tuple[list[dict], list[dict]]:
    """(early_bird.csv rows, early_bird_distances.csv rows) of a run; empty lists when it has no search.
    TicketlabError naming the file and line when one is not UTF-8 CSV, lacks a column or holds a bad cell."""
    run = Path(run_dir)
    tables = []
    for name, columns in EARLY_BIRD_COLUMNS.items():
        path = run / name
        tables.append(_checked_rows(path, columns) if path.is_file() else [])
    return tables[0], tables[1]


def _checked_rows(path: Path, columns: dict[str, str]) -> list[dict]:
    hint = "rerun the run's `ticketlab find` command to rewrite it"
    try:
        table = list(csv.reader(path.read_bytes().decode("utf-8").splitlines()))
    except (UnicodeDecodeError, csv.Error) as error:
        raise TicketlabError(f"{path} is not a CSV file ({error}); {hint}") from None
    header = table[0] if table else []
    missing = [column for column in columns if column not in header]
    if missing:
        raise TicketlabError(f"{path}: missing column(s) {', '.join(missing)}; {hint}")
    rows = []
    for number, cells in enumerate(table[1:], start=2):
        if len(cells) != len(header):
            raise TicketlabError(f"{path}:{number}: expected {len(header)} fields, got {len(cells)}; {hint}")
        row = dict(zip(header, cells))
        for column, kind in columns.items():
            if not _valid(row[column], kind):
                raise TicketlabError(f"{path}:{number}: column {column!r} is {row[column]!r}, not "
                                     f"{'True/False' if kind == 'bool' else 'a number'}; {hint}")
        rows.append(row)
    return rows


def _valid(text: str, kind: str) -> bool:
    if kind == "bool":
        return text in ("True", "False")
    if text == "" or text == "None":
        return kind.endswith("?")
    try:
        value = float(text) if kind.startswith("float") else int(text)
    except ValueError:
        return False
    return math.isfinite(value)


def draw_early_bird_figure(summary_rows: Sequence[Mapping[str, str]], distance_rows: Sequence[Mapping[str, str]],
                           path_stem: str | Path, threshold: float | None = None, title: str = "") -> list[Path]:
    """Mask distance (max normalized Hamming distance from the newest mask to the others in the window) against
    the training step, one panel per trial, one colour per level (weights solid, channels dashed); the detection
    step of each level is a vertical dotted line."""
    trials = sorted({int(row["trial"]) for row in distance_rows})
    levels = sorted({int(row["level"]) for row in distance_rows})
    colours = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink"]
    fig = Figure(figsize=(max(7.5, 5.6 * len(trials)), 4.4), layout="constrained")
    FigureCanvasAgg(fig)
    axes = np.atleast_1d(fig.subplots(1, max(1, len(trials)), squeeze=False)).ravel()
    percent = {(int(r["trial"]), int(r["level"])): float(r["weights_remaining_percent"]) for r in summary_rows}
    for ax, trial in zip(axes, trials):
        for index, level in enumerate(levels):
            colour = colours[index % len(colours)]
            points = [row for row in distance_rows if int(row["trial"]) == trial and int(row["level"]) == level]
            for key, style in (("weights_distance", "-"), ("channels_distance", "--")):
                pairs = [(int(row["step"]), float(row[key])) for row in points if row.get(key) not in (None, "")]
                if pairs:
                    steps, values = zip(*pairs)
                    label = f"{percent.get((trial, level), float('nan')):.1f}% ({key.split('_')[0]})"
                    ax.plot(steps, values, style, color=colour, marker=".", label=label)
            for row in summary_rows:
                if int(row["trial"]) == trial and int(row["level"]) == level and row["detected"] == "True":
                    ax.axvline(int(row["detection_step"]), color=colour, linestyle=":", linewidth=1.5)
        if threshold is not None:
            ax.axhline(threshold, color="gray", linewidth=1, label=f"threshold {threshold:g}")
        ax.set_xlabel("Dense training step")
        ax.set_ylabel("Mask distance (normalized Hamming)")
        ax.set_title(f"trial {trial}: detection = dotted lines", fontsize=10)
        ax.grid(True, alpha=0.35)
        ax.legend(fontsize=7)
    fig.suptitle(f"{title + ': ' if title else ''}early-bird mask distance during dense training", fontsize=11)
    return save_figure(fig, path_stem)
