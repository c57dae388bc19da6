"""Read an experiment's ``results.csv`` and aggregate it over trials.

Only the standard library and numpy are used here so that reports can be
built on machines without torch.
"""

from __future__ import annotations

import csv
import math
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ticketlab.errors import TicketlabError
# the variants' labels and order are the variants registry's (torch-free); re-exported for the report modules
from ticketlab.lottery.variants import variant_label, variant_short_label, variant_sort_key  # noqa: F401
from ticketlab.tasks.metrics import Metric, metric_named

#: Integer-valued metric columns (training steps).
INT_COLUMNS: tuple[str, ...] = ("early_stop_iteration", "final_iteration")

#: Real-valued metric columns (accuracies are fractions in [0, 1]).
FLOAT_COLUMNS: tuple[str, ...] = (
    "weights_remaining_percent",
    "early_stop_test_accuracy",
    "early_stop_val_loss",
    "final_test_accuracy",
    "final_train_accuracy",
    "early_stop_test_metric",
    "final_test_metric",
)

#: Task-neutral columns (the task's primary test metric, named in the ``metric`` column); files written before
#: tasks existed lack them, and their metric is accuracy.
GENERIC_COLUMNS: tuple[str, ...] = ("metric", "early_stop_test_metric", "final_test_metric")

#: Columns aggregated by :func:`summarize_results` (mean/min/max/std).
METRIC_COLUMNS: tuple[str, ...] = (
    "early_stop_iteration",
    "early_stop_test_accuracy",
    "early_stop_val_loss",
    "final_test_accuracy",
    "final_train_accuracy",
    "final_iteration",
    "early_stop_test_metric",
    "final_test_metric",
)

REQUIRED_COLUMNS: tuple[str, ...] = ("variant", "trial", "level", "weights_remaining_percent") + tuple(
    column for column in METRIC_COLUMNS if column not in GENERIC_COLUMNS
)

STATS: tuple[str, ...] = ("mean", "min", "max", "std")


def ordered_variants(summary: Iterable[Mapping[str, Any]]) -> list[str]:
    """The distinct variants of ``summary`` in canonical order."""
    return sorted({str(entry["variant"]) for entry in summary}, key=variant_sort_key)


class ResultsWarning(UserWarning):
    """A results.csv cell was read as missing (NaN or infinite metric)."""


def _parse_int(text: str, column: str, where: str, missing_ok: bool = False) -> int | float:
    try:
        value = float(text)
    except ValueError:
        raise TicketlabError(f"{where}: column {column!r} is not a number: {text!r}") from None
    if missing_ok and not math.isfinite(value):
        return _missing(text, column, where)
    if not math.isfinite(value) or value != int(value):
        raise TicketlabError(f"{where}: column {column!r} is not an integer: {text!r}")
    return int(value)


def _parse_float(text: str, column: str, where: str, missing_ok: bool = True) -> float:
    if text == "":
        return math.nan
    try:
        value = float(text)
    except ValueError:
        raise TicketlabError(f"{where}: column {column!r} is not a number: {text!r}") from None
    if not math.isfinite(value):
        if not missing_ok:
            raise TicketlabError(f"{where}: column {column!r} must be a finite number, not {text!r}")
        return _missing(text, column, where)
    return value


def _missing(text: str, column: str, where: str) -> float:
    warnings.warn(ResultsWarning(f"{where}: column {column!r} is {text!r}; treated as missing"), stacklevel=2)
    return math.nan


def read_results(
    csv_path: str | os.PathLike[str], marked_missing: list[set[str]] | None = None
) -> list[dict[str, Any]]:
    """Read ``results.csv`` into typed rows.

    Each row has ``variant`` (str), ``trial``/``level``/iteration columns (int) and
    float accuracy/loss/percent columns (an empty cell becomes NaN). A metric cell
    holding NaN or an infinity (a diverged run) is read as missing (NaN) with a
    :class:`ResultsWarning`; summaries skip it. Extra columns are ignored. Returns
    ``[]`` for a file without data rows. ``marked_missing``, when given, receives per row
    the columns whose cell was written as NaN or an infinity (see :func:`check_against_jobs`).

    Raises:
        TicketlabError: the file is missing, is not CSV text, lacks a required column,
            or has a bad value (including a non-finite trial, level or weights percent).
    """
    path = Path(csv_path)
    try:
        handle = path.open(newline="", encoding="utf-8")
    except FileNotFoundError:
        raise TicketlabError(f"results file not found: {path}") from None
    except OSError as exc:
        raise TicketlabError(f"cannot read results file {path}: {exc.strerror}") from None
    try:
        with handle:
            return _read_rows(path, handle, marked_missing if marked_missing is not None else [])
    except (UnicodeDecodeError, csv.Error) as exc:
        reason = "not UTF-8 text" if isinstance(exc, UnicodeDecodeError) else str(exc)
        raise TicketlabError(f"{path} is not a results CSV ({reason}); rerun `ticketlab find` to rewrite it") \
            from None


def _read_rows(path: Path, handle, marked_missing: list[set[str]]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    reader = csv.reader(handle, skipinitialspace=True)
    header: list[str] | None = None
    for line in reader:
        if not line or all(cell.strip() == "" for cell in line):
            continue
        if header is None:
            header = [cell.strip() for cell in line]
            missing = [col for col in REQUIRED_COLUMNS if col not in header]
            if missing:
                raise TicketlabError(f"{path}: missing column(s) {', '.join(missing)}")
            index = {col: header.index(col) for col in REQUIRED_COLUMNS + GENERIC_COLUMNS if col in header}
            continue
        where = f"{path}:{reader.line_num}"
        if len(line) < len(header):
            raise TicketlabError(f"{where}: expected {len(header)} fields, got {len(line)}")
        cells = {col: line[i].strip() for col, i in index.items()}
        variant = cells["variant"]
        if not variant:
            raise TicketlabError(f"{where}: empty variant")
        if not variant.isprintable():
            raise TicketlabError(f"{where}: variant {variant!r} is not a name")
        row: dict[str, Any] = {"variant": variant}
        for col in ("trial", "level") + INT_COLUMNS:
            row[col] = _parse_int(cells[col], col, where, missing_ok=col in INT_COLUMNS)
        if "metric" not in cells:  # written before tasks existed: the metric is accuracy
            cells |= {"metric": "accuracy", "early_stop_test_metric": cells["early_stop_test_accuracy"],
                      "final_test_metric": cells["final_test_accuracy"]}
        row["metric"] = cells["metric"] or "accuracy"
        for col in FLOAT_COLUMNS:
            row[col] = _parse_float(cells.get(col, ""), col, where, missing_ok=col != "weights_remaining_percent")
        marked_missing.append({col for col in INT_COLUMNS + FLOAT_COLUMNS
                               if cells.get(col, "") != "" and isinstance(row[col], float) and math.isnan(row[col])})
        rows.append(row)
    return rows


def check_against_jobs(
    csv_path: Path,
    rows: Sequence[Mapping[str, Any]],
    records: Mapping[tuple[int, int, str], Mapping[str, Any] | None],
    variants: Sequence[str] | None = None,
    trials: int | None = None,
    marked_missing: Sequence[set[str]] | None = None,
) -> None:
    """TicketlabError unless ``results.csv``'s rows agree with the sealed results of the run's finished jobs.

    ``records`` maps (trial, level, job variant) to a checked result.json record (level 0 is the ``dense`` job,
    whose numbers every variant's level-0 row repeats; None: its result.json is damaged, reported elsewhere).
    Each row whose job has finished must hold its numbers (a flipped digit or a truncated cell is caught); with
    the run's ``variants`` and number of ``trials``, each row must name a job of the run and each finished job
    must have its rows (a lost row is caught). A row whose job has no result.json is not checked: that job
    reads as unfinished (killed, or set aside to be recomputed). ``marked_missing`` (from :func:`read_results`) names per row the cells written as NaN
    or an infinity: read as missing, with a warning, they are not compared (a report shows them as missing).
    """
    hint = "rerun the run's `ticketlab find` command to rewrite it"
    seen = set()
    for number, row in enumerate(rows):
        key = (int(row["trial"]), int(row["level"]), str(row["variant"]))
        job = (key[0], 0, "dense") if key[1] == 0 else key
        if variants is not None and trials is not None and (key[2] not in variants or not 0 <= key[0] < trials):
            raise TicketlabError(f"{csv_path}: row of variant {key[2]!r}, trial {key[0]} is not a job of this run "
                                 f"(edited or damaged); {hint}")
        seen.add(key)
        record = records.get(job)
        if record is None:
            continue
        marked = marked_missing[number] if marked_missing is not None else set()
        for column, expected in _record_values(record).items():
            if column not in marked and not _same_number(row.get(column), expected):
                raise TicketlabError(f"{csv_path}: {column} of trial {key[0]} level {key[1]} {key[2]} is "
                                     f"{row.get(column)!r}, its sealed result.json says {expected!r} (edited or "
                                     f"damaged); {hint}")
    if variants is None or trials is None:
        return
    for trial, level, job_variant in (key for key, record in records.items() if record is not None):
        wanted = variants if level == 0 and job_variant == "dense" else (job_variant,)
        for variant in wanted:
            if variant in variants and trial < trials and (trial, level, variant) not in seen:
                raise TicketlabError(f"{csv_path}: no row for trial {trial} level {level} {variant}, a finished "
                                     f"job (rows lost, or written before it finished); {hint}")


def _record_values(record: Mapping[str, Any]) -> dict[str, Any]:
    """The results.csv columns of a result.json record (records written before tasks existed are accuracy)."""
    values = {column: record.get(column) for column in ("weights_remaining_percent",) + METRIC_COLUMNS}
    if "metric" not in record:
        values |= {"early_stop_test_metric": record.get("early_stop_test_accuracy"),
                   "final_test_metric": record.get("final_test_accuracy")}
    values["metric"] = record.get("metric") or "accuracy"
    return values


def _same_number(value: Any, expected: Any) -> bool:
    """Cell and record agree: equal numbers (CSV holds each float's shortest repr), both missing, or equal text."""
    if isinstance(expected, str) or isinstance(value, str):
        return value == expected
    missing = [item is None or (isinstance(item, float) and not math.isfinite(item)) for item in (value, expected)]
    if any(missing):
        return all(missing)
    return float(value) == float(expected)


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
    and, for every metric in :data:`METRIC_COLUMNS`, the keys ``<metric>_mean``,
    ``_min``, ``_max`` and ``_std`` (population std, ddof=0; NaN cells are skipped).
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

