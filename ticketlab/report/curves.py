"""Learning curves: a validation metric against training iteration, one panel per pruning level, one line per variant
(mean over trials, shaded min-max), read from every job's metrics.jsonl. Agg canvas, PNG + SVG, no torch.

The curve drawn is the first column the jobs log of CURVE_COLUMNS: the validation return of agents, validation
accuracy of classifiers, else the validation loss.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ticketlab.lottery.variants import variant_label, variant_style, winning_ticket
from ticketlab.report.figures import format_percent, save_figure
from ticketlab.report.results import ordered_variants
from ticketlab.store import read_jsonl

# column -> (axis label, scale); the first one the jobs log is drawn
CURVE_COLUMNS = {
    "val_return": ("validation mean episodic return", 1.0),
    "val_accuracy": ("validation accuracy (%)", 100.0),
    "val_bleu": ("validation BLEU", 1.0),
    "val_loss": ("validation loss", 1.0),
}
MAX_PANELS = 4
DENSE_DIR = "dense"


def read_curves(run_dir: Path) -> dict[tuple[int, str], dict[int, list[tuple[int, float]]]]:
    """{(level, variant): {trial: [(step, row), ...]}} of every job's metrics.jsonl (rows as dicts)."""
    curves: dict = {}
    for path in sorted(Path(run_dir).glob("trial_*/level_*/*/metrics.jsonl")):
        try:
            trial = int(path.parts[-4].split("_")[1])
            level = int(path.parts[-3].split("_")[1])
        except (IndexError, ValueError):
            continue
        rows = read_jsonl(path)  # a last line cut by a kill is left out
        if rows:
            curves.setdefault((level, path.parts[-2]), {})[trial] = rows
    return curves


def curve_column(curves: dict) -> str | None:
    """The CURVE_COLUMNS entry the jobs log (None when no job logged one)."""
    logged = {key for trials in curves.values() for rows in trials.values() for row in rows for key in row}
    return next((column for column in CURVE_COLUMNS if column in logged), None)


def draw_learning_curves(run_dir: str | Path, path_stem: str | Path, remaining: dict[int, float],
                         title: str | None = None) -> list[Path] | None:
    """Draw the learning curves of `run_dir` (levels: 0, then evenly spaced up to the last, at most MAX_PANELS;
    `remaining` maps level -> weights remaining %) to PNG and SVG; None when no job logged a curve column."""
    curves = read_curves(Path(run_dir))
    column = curve_column(curves)
    if column is None:
        return None
    label, scale = CURVE_COLUMNS[column]
    levels = sorted({level for level, _ in curves})
    if len(levels) > MAX_PANELS:
        picks = np.linspace(0, len(levels) - 1, MAX_PANELS).round().astype(int)
        levels = [levels[index] for index in dict.fromkeys(picks.tolist())]
    variants = ordered_variants({"variant": variant} for _, variant in curves if variant != DENSE_DIR)
    fig = Figure(figsize=(4.2 * len(levels), 3.8), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(levels), squeeze=False, sharey=True)[0]
    handles: dict[str, object] = {}
    for ax, level in zip(axes, levels):
        shown = [DENSE_DIR] if level == 0 else variants
        for variant in shown:
            trials = curves.get((level, variant))
            if not trials:
                continue
            steps, values = _aligned(trials, column)
            if not steps:
                continue
            colour, _, linestyle = (variant_style(winning_ticket() if variant == DENSE_DIR else variant)
                                    or ("black", "o", "-"))
            mean = np.nanmean(values, axis=0) * scale
            (line,) = ax.plot(steps, mean, color="black" if variant == DENSE_DIR else colour, linestyle=linestyle,
                              linewidth=1.8)
            if len(values) > 1:
                ax.fill_between(steps, np.nanmin(values, axis=0) * scale, np.nanmax(values, axis=0) * scale,
                                color=line.get_color(), alpha=0.15, linewidth=0)
            handles.setdefault("dense network" if variant == DENSE_DIR else variant_label(variant), line)
        percent = remaining.get(level)
        ax.set_title(f"level {level}" + (f": {format_percent(percent)}% of weights" if percent is not None else ""))
        ax.set_xlabel("training iteration")
        ax.grid(True, alpha=0.35)
    axes[0].set_ylabel(label)
    trial_count = max(len(trials) for trials in curves.values())
    fig.suptitle(f"{title or 'Learning curves'}: mean of {trial_count} trial{'s' * (trial_count != 1)}"
                 + (", shaded min-max" if trial_count > 1 else ""), fontsize=11)
    _legend_that_fits(fig, handles)
    return save_figure(fig, path_stem)


def _legend_that_fits(fig: Figure, handles: dict[str, object]) -> None:
    """The legend below the panels in as many columns (at most 4) as the figure's width holds: a row wider than
    the figure would be cut off at both sides (two panels hold three columns of the longest variant names)."""
    renderer = fig.canvas.get_renderer()
    for columns in range(min(4, len(handles)), 0, -1):
        legend = fig.legend(list(handles.values()), list(handles), loc="outside lower center", ncol=columns,
                            frameon=False)
        if columns == 1 or legend.get_window_extent(renderer).width <= 0.98 * fig.bbox.width:
            return
        legend.remove()


def _aligned(trials: dict[int, list[dict]], column: str) -> tuple[list[int], np.ndarray]:
    """The steps every trial logged `column` at, and [trials, steps] values there (NaN where one is missing)."""
    per_trial = [{row["step"]: row[column] for row in rows if column in row and _finite(row[column])}
                 for rows in trials.values()]
    steps = sorted(set().union(*per_trial))
    values = np.array([[points.get(step, math.nan) for step in steps] for points in per_trial], dtype=float)
    return steps, values


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)
