"""Markdown and terminal tables of a results summary (see :func:`summarize_results`)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ticketlab.lottery.variants import variant_label, variant_short_label
from ticketlab.report.results import ordered_variants, summary_metric, with_dense_level

MISSING = "–"
_SHORT = {"perplexity": "ppl", "bits_per_char": "bpc"}  # terminal-table headings of the metrics

_Index = dict[tuple[str, int], Mapping[str, Any]]


def format_remaining(value: float) -> str:
    """Weights-remaining percent with 3 significant digits (100, 51.3, 7.00, 0.360)."""
    if not math.isfinite(value):
        return MISSING
    text = f"{value:#.3g}"
    if "e" in text:
        return f"{value:.3g}"
    return text.rstrip(".")


def _finite(*values: Any) -> bool:
    return all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)


def _acc(entry: Mapping[str, Any] | None, metric: str, decimals: int = 2, sep: str = " ± ", scale: float = 100.0) -> str:
    """A column's 'mean ± std', scaled (accuracy fractions: x100, percent)."""
    if entry is None or not _finite(entry[f"{metric}_mean"]):
        return MISSING
    mean = scale * entry[f"{metric}_mean"]
    std = scale * entry[f"{metric}_std"] if _finite(entry[f"{metric}_std"]) else math.nan
    if not math.isfinite(std):
        return f"{mean:.{decimals}f}"
    return f"{mean:.{decimals}f}{sep}{std:.{decimals}f}"


def _iteration(entry: Mapping[str, Any] | None, compact: bool = False) -> str:
    if entry is None or not _finite(entry["early_stop_iteration_mean"]):
        return MISSING
    value = float(entry["early_stop_iteration_mean"])
    if compact and value >= 9999.5:
        return f"{value / 1000:.0f}k" if value >= 99_950 else f"{value / 1000:.1f}k"
    return f"{value:.0f}"


def _prepare(
    summary: Sequence[Mapping[str, Any]],
) -> tuple[list[str], list[int], dict[int, float], _Index]:
    """Variants, levels, mean percent per level, and an index of entries by (variant, level)."""
    filled = with_dense_level(summary)
    variants = ordered_variants(filled)
    index: _Index = {(e["variant"], int(e["level"])): e for e in filled}
    levels = sorted({int(e["level"]) for e in filled})
    remaining: dict[int, float] = {}
    for level in levels:
        xs = [
            float(e["weights_remaining_percent"])
            for e in filled
            if int(e["level"]) == level and _finite(e["weights_remaining_percent"])
        ]
        remaining[level] = float(np.mean(xs)) if xs else math.nan
    return variants, levels, remaining, index


def _markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    aligns = ["---:"] * len(header)
    lines = [
        "| " + " | ".join(header) + " |",
        "| " + " | ".join(aligns) + " |",
    ]
    lines.extend("| " + " | ".join(row) + " |" for row in rows)
    return "\n".join(lines)


def summary_markdown(summary: Sequence[Mapping[str, Any]]) -> str:
    """Markdown tables: early-stop accuracy/iteration per level and variant, then final accuracies.

    Accuracies are percentages with 2 decimals (mean ± std over trials), the weights
    remaining % (mean over variants at that level) has 3 significant digits. Variants
    without a level-0 row show the dense network's numbers there.
    """
    variants, levels, remaining, index = _prepare(summary)
    if not variants:
        return "_No results._\n"
    metric = summary_metric(summary)
    def table(columns) -> str:
        """One row per level; for each variant one cell per (title, cell function) column."""
        header = ["level", "weights remaining %"]
        header += [f"{variant_label(variant)}: {title}" for variant in variants for title, _ in columns]
        rows = []
        for level in levels:
            row = [str(level), format_remaining(remaining[level])]
            for variant in variants:
                entry = index.get((variant, level))
                row += [cell(entry) for _, cell in columns]
            rows.append(row)
        return _markdown_table(header, rows)

    if metric.name == "accuracy":
        early = table([
            ("early-stop test acc % (mean ± std)", lambda entry: _acc(entry, "early_stop_test_accuracy")),
            ("early-stop iter (mean)", _iteration),
        ])
        final = table([
            ("final test acc % (mean ± std)", lambda entry: _acc(entry, "final_test_accuracy")),
            ("final train acc % (mean ± std)", lambda entry: _acc(entry, "final_train_accuracy")),
        ])
    else:
        scale, unit = (100.0, " %") if metric.percent else (1.0, "")
        early = table([
            (f"early-stop {metric.label}{unit} (mean ± std)",
             lambda entry: _acc(entry, "early_stop_test_metric", decimals=3, scale=scale)),
            ("early-stop iter (mean)", _iteration),
        ])
        final = table([
            (f"final {metric.label}{unit} (mean ± std)",
             lambda entry: _acc(entry, "final_test_metric", decimals=3, scale=scale)),
        ])
    return (
        f"### Early stopping ({metric.early_stop})\n\n"
        + early
        + "\n\n### End of training\n\n"
        + final
        + "\n"
    )


def summary_text_table(summary: Sequence[Mapping[str, Any]], max_width: int = 100) -> str:
    """Fixed-width terminal table: level, remaining %, per variant acc % mean±std and iteration.

    Accuracies use 1 decimal and iterations >= 10000 are shown as e.g. ``12.3k`` so
    that six variants fit in about 100 columns.
    """
    variants, levels, remaining, index = _prepare(summary)
    if not variants:
        return "(no results)"
    metric = summary_metric(summary)
    if metric.name == "accuracy":
        column, scale, head_label = "early_stop_test_accuracy", 100.0, "acc%"
    else:
        column, scale = "early_stop_test_metric", 100.0 if metric.percent else 1.0
        head_label = _SHORT.get(metric.name, metric.name[:6])
    decimals = 1 if metric.percent or metric.name == "perplexity" else 3
    lead_head = ["lvl", "rem%"]
    lead_rows = [[str(level), format_remaining(remaining[level])] for level in levels]
    lead_w = [max(len(lead_head[i]), *(len(r[i]) for r in lead_rows)) for i in range(2)]

    groups = []  # (label, acc_w, iter_w, cells)
    for variant in variants:
        cells = []
        for level in levels:
            entry = index.get((variant, level))
            acc = _acc(entry, column, decimals=decimals, sep="±", scale=scale)
            cells.append((acc, _iteration(entry, compact=True)))
        acc_w = max(len(head_label), *(len(a) for a, _ in cells))
        it_w = max(len("iter"), *(len(i) for _, i in cells))
        label = variant_short_label(variant)
        # Widen the accuracy column if the label is wider than the group.
        acc_w = max(acc_w, len(label) - it_w - 1)
        groups.append((label, acc_w, it_w, cells))

    def total(gap: int) -> int:
        return lead_w[0] + 1 + lead_w[1] + sum(gap + a + 1 + i for _, a, i, _ in groups)

    gap = 2 if total(2) <= max_width else 1
    sep = " " * gap

    def lead(cells: Sequence[str]) -> str:
        return f"{cells[0]:>{lead_w[0]}} {cells[1]:>{lead_w[1]}}"

    top = " " * (lead_w[0] + 1 + lead_w[1])
    head = lead(lead_head)
    for label, acc_w, it_w, _ in groups:
        top += sep + f"{label:^{acc_w + 1 + it_w}}"
        head += sep + f"{head_label:>{acc_w}} {'iter':>{it_w}}"
    lines = [top.rstrip(), head, "-" * len(head)]
    for r, level_cells in enumerate(lead_rows):
        line = lead(level_cells)
        for _, acc_w, it_w, cells in groups:
            acc, it = cells[r]
            line += sep + f"{acc:>{acc_w}} {it:>{it_w}}"
        lines.append(line)
    return "\n".join(lines)
