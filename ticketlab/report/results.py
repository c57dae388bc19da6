"""Aggregate an experiment's ``results.csv`` over trials (the file's format and checked reader:
`ticketlab.lottery.results_csv`).

Only the standard library and numpy are used here so that reports can be
built on machines without torch.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from ticketlab.errors import TicketlabError
from ticketlab.lottery.results_csv import COST_COLUMNS, METRIC_COLUMNS
from ticketlab.lottery.variants import variant_sort_key
from ticketlab.tasks.metrics import Metric, metric_named

STATS: tuple[str, ...] = ("mean", "min", "max", "std")


def ordered_variants(summary: Iterable[Mapping[str, Any]]) -> list[str]:
    """The distinct variants of ``summary`` in canonical order."""
    return sorted({str(entry["variant"]) for entry in summary}, key=variant_sort_key)


def _stats(values: Sequence[float]) -> dict[str, float]:
    """mean/min/max/std (population std, ddof=0) over the finite values; NaN if none."""
    arr = np.asarray(values, dtype=float)
    arr = arr[np.isfinite(arr)]
    if arr.size == 0:
        return {name: math.nan for name in STATS}
    return {
        "mean": float(arr.mean()),
        "min": float(arr.min()),
        "max": float(arr.max()),
        "std": float(arr.std()),
    }


def summary_metric(summary: Iterable[Mapping[str, Any]]) -> Metric:
    """The primary metric of a summary's rows (accuracy when none is named)."""
    names = {str(entry.get("metric") or "accuracy") for entry in summary}
    if len(names) > 1:
        raise TicketlabError(f"results mix metrics {', '.join(sorted(names))}; one run has one metric")
    return metric_named(names.pop() if names else "accuracy")


def summarize_results(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Aggregate rows over trials, grouped by ``(variant, level)``.

    Each entry has ``variant``, ``level``, ``n`` (number of rows = trials),
    ``trials`` (sorted trial ids), ``weights_remaining_percent`` (mean over trials)
    and, for every metric in :data:`METRIC_COLUMNS` and training-cost column in :data:`COST_COLUMNS`, the keys
    ``<metric>_mean``, ``_min``, ``_max`` and ``_std`` (population std, ddof=0; NaN cells are skipped).
    Entries are sorted by canonical variant order, then level.
    """
    groups: dict[tuple[str, int], list[Mapping[str, Any]]] = {}
    for row in rows:
        if "early_stop_test_metric" not in row:  # a row of the accuracy-only layout: its metric is accuracy
            row = {**row, "metric": "accuracy", "early_stop_test_metric": row["early_stop_test_accuracy"],
                   "final_test_metric": row["final_test_accuracy"]}
        groups.setdefault((str(row["variant"]), int(row["level"])), []).append(row)
    summary: list[dict[str, Any]] = []
    for (variant, level), members in sorted(
        groups.items(), key=lambda item: (variant_sort_key(item[0][0]), item[0][1])
    ):
        entry: dict[str, Any] = {
            "variant": variant,
            "level": level,
            "metric": str(members[0].get("metric") or "accuracy"),
            "n": len(members),
            "trials": sorted(int(m["trial"]) for m in members),
            "weights_remaining_percent": _stats(
                [float(m["weights_remaining_percent"]) for m in members]
            )["mean"],
        }
        for metric in METRIC_COLUMNS:
            for name, value in _stats([float(m[metric]) for m in members]).items():
                entry[f"{metric}_{name}"] = value
        for column in COST_COLUMNS:  # NaN for rows of files written before the training-cost columns
            for name, value in _stats([float(m.get(column, math.nan)) for m in members]).items():
                entry[f"{column}_{name}"] = value
        summary.append(entry)
    return summary


def _pool(entries: Sequence[Mapping[str, Any]], metric: str) -> dict[str, float]:
    """Combine per-group stats of the same quantity into stats of the union (ddof=0)."""
    usable = [e for e in entries if math.isfinite(e[f"{metric}_mean"])]
    if not usable:
        return {name: math.nan for name in STATS}
    weights = np.array([e["n"] for e in usable], dtype=float)
    means = np.array([e[f"{metric}_mean"] for e in usable])
    stds = np.array([e[f"{metric}_std"] for e in usable])
    mean = float(np.average(means, weights=weights))
    second_moment = float(np.average(stds**2 + means**2, weights=weights))
    return {
        "mean": mean,
        "min": float(min(e[f"{metric}_min"] for e in usable)),
        "max": float(max(e[f"{metric}_max"] for e in usable)),
        "std": math.sqrt(max(second_moment - mean**2, 0.0)),
    }


def with_dense_level(summary: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Give every variant a level-0 (dense network) entry so all curves start at 100%.

    If some variant has level-0 entries, each variant without one gets a copy of the
    dense statistics pooled over all variants' level-0 entries (they describe the same
    dense runs), marked with ``"dense_injected": True``. Input entries are copied,
    never modified; the result keeps the canonical (variant, level) order.
    """
    result = [dict(entry) for entry in summary]
    dense = [entry for entry in result if entry["level"] == 0]
    if not dense:
        return result
    pooled: dict[str, Any] = {
        "level": 0,
        "metric": dense[0].get("metric", "accuracy"),
        "n": max(int(e["n"]) for e in dense),
        "trials": sorted({t for e in dense for t in e.get("trials", [])}),
        "weights_remaining_percent": float(
            np.average(
                [e["weights_remaining_percent"] for e in dense],
                weights=[e["n"] for e in dense],
            )
        ),
        "dense_injected": True,
    }
    for metric in METRIC_COLUMNS:
        for name, value in _pool(dense, metric).items():
            pooled[f"{metric}_{name}"] = value
    have_dense = {entry["variant"] for entry in dense}
    for variant in ordered_variants(result):
        if variant not in have_dense:
            result.append({"variant": variant, **pooled})
    result.sort(key=lambda e: (variant_sort_key(e["variant"]), e["level"]))
    return result

