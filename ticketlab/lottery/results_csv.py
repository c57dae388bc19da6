"""The format of an experiment's ``results.csv``: its columns, how a finished job's result becomes a row, and the
checked reader (typed rows, damage named in one line) with its check against the run's sealed job results.

The lottery layer writes the file (`ticketlab.lottery.experiment.write_results_csv`) and checks it
(`ticketlab.lottery.integrity`); the report layer reads it. Only the standard library, so reports and `verify`
run on machines without torch.
"""

from __future__ import annotations

import csv
import io
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ticketlab.errors import TicketlabError

#: The columns results.csv is written with, in order.
RESULT_COLUMNS: tuple[str, ...] = (
    "variant",
    "trial",
    "level",
    "weights_remaining_percent",
    "early_stop_iteration",
    "early_stop_test_accuracy",
    "early_stop_val_loss",
    "early_stop_val_accuracy",
    "final_test_accuracy",
    "final_train_accuracy",
    "final_val_loss",
    "final_iteration",
    # task-neutral: the task's primary test metric (accuracy, perplexity, bits_per_char, ...)
    "metric",
    "early_stop_test_metric",
    "final_test_metric",
    # training cost of the result, every job that led to it included (`ticketlab.lottery.training_cost`)
    "train_steps_total",
    "train_flops_total",
)

#: Training-cost columns: files written before them lack them (their rows have no such keys), and a cell is empty
#: where the cost is unknown (a task without FLOPs accounting).
COST_COLUMNS: tuple[str, ...] = ("train_steps_total", "train_flops_total")

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
    float accuracy/loss/percent columns and, when the file has them, training-cost columns
    (an empty cell becomes NaN). A metric cell holding NaN or an infinity (a diverged run)
    is read as missing (NaN) with a :class:`ResultsWarning`; summaries skip it. Extra columns are ignored. Returns
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
            index = {col: header.index(col) for col in REQUIRED_COLUMNS + GENERIC_COLUMNS + COST_COLUMNS
                     if col in header}
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
        for col in FLOAT_COLUMNS + tuple(col for col in COST_COLUMNS if col in cells):
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
    reads as unfinished (killed, or set aside to be recomputed). ``marked_missing`` (from :func:`read_results`)
    names per row the cells written as NaN or an infinity: read as missing, with a warning, they are not compared
    (a report shows them as missing).
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


def with_generic_metric(result: dict) -> dict:
    """A job's result with the task-neutral metric keys; results written before tasks existed are accuracy."""
    if "metric" in result:
        return result
    return result | {"metric": "accuracy", "early_stop_test_metric": result.get("early_stop_test_accuracy"),
                     "final_test_metric": result.get("final_test_accuracy")}


def result_row(result: dict, variant: str) -> dict:
    """The results.csv row of a finished job's result under `variant` (level 0 rows repeat the dense job's)."""
    result = with_generic_metric(result)
    return {column: result.get(column) for column in RESULT_COLUMNS} | {"variant": variant}


def results_csv_bytes(rows: Sequence[Mapping[str, Any]]) -> bytes:
    """The text of results.csv holding `rows` (the caller writes it atomically)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=RESULT_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue().encode()
