"""transfer.csv: one row per transfer job and control, written from the sealed results, read back checked
against them, and summarized as a source-by-target matrix (Morcos et al., 2019, Figure 4 style).

The rows are plain CSV (readable without ticketlab); `read_transfer_csv` and `check_transfer_rows` refuse a file
that was edited or damaged in one line naming the file, row and cell.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

from ticketlab.config import ExperimentConfig, config_from_dict
from ticketlab.errors import ConfigError
from ticketlab.lottery.integrity import job_key_of, read_finished_jobs, read_sealed_result
from ticketlab.lottery.keys import DENSE
from ticketlab.lottery.variants import winning_ticket
from ticketlab.store import read_json, write_csv

TRANSFERRED, RANDOM_TICKET, TARGET_FOUND = "transferred", "random_ticket", "target_found"
TRANSFER_COLUMNS = (
    "source", "source_data", "source_optimizer", "target", "optimizer", "trial", "level",
    "weights_remaining_percent", "variant", "early_stop_iteration", "early_stop_test_accuracy",
    "early_stop_val_loss", "final_test_accuracy", "final_train_accuracy", "final_iteration",
)
# the columns of a task whose metric is not accuracy (a user task's MSE, perplexity): transfer.csv adds them after
# TRANSFER_COLUMNS when some row has such a metric, so accuracy-only files keep their layout
TASK_METRIC_COLUMNS = ("metric", "early_stop_test_metric", "final_test_metric")
SOURCE_RECORD = "source.json"


def data_label(config: ExperimentConfig) -> str:
    """'fashion_mnist 0-4 adam': the dataset, its class subset and the optimizer (a row/column of the matrix)."""
    classes = f" {config.data.classes}" if config.data.classes is not None else ""
    return f"{config.data.name}{classes} {config.train.optimizer}"


def transfer_rows(transfer_dir: Path, target_run: Path, target: ExperimentConfig) -> list[dict]:
    """transfer.csv's rows: every finished transfer job of every source directory, then the target's own
    tickets (`target_found`, levels >= 1) and its dense network (`dense`, level 0), trial by trial."""
    rows = []
    target_label = data_label(target)
    for source_dir in sorted(path for path in transfer_dir.iterdir() if (path / SOURCE_RECORD).is_file()):
        record = read_json(source_dir / SOURCE_RECORD)
        source_config = config_from_dict(record["source_config"])
        for result_path in sorted(source_dir.glob("trial_*/level_*/*/result.json")):
            result = read_sealed_result(result_path)
            rows.append(_row(source_dir.name, data_label(source_config), source_config.train.optimizer,
                             target_label, target, result))
    for result_path in sorted(target_run.glob("trial_*/level_*/*/result.json")):
        variant = result_path.parent.name
        if variant not in (DENSE, winning_ticket()):
            continue
        result = read_sealed_result(result_path) | {"variant": DENSE if variant == DENSE else TARGET_FOUND}
        if result["trial"] < target.trials:
            rows.append(_row(target_run.name, target_label, target.train.optimizer, target_label, target, result))
    return rows


def _row(source: str, source_data: str, source_optimizer: str, target_label: str, target: ExperimentConfig,
         result: dict) -> dict:
    values = {"source": source, "source_data": source_data, "source_optimizer": source_optimizer,
              "target": target_label, "optimizer": target.train.optimizer}
    row = values | {column: result.get(column) for column in TRANSFER_COLUMNS if column not in values}
    if _reports_own_metric(result):
        row |= {column: result.get(column) for column in TASK_METRIC_COLUMNS}
    return row


def _reports_own_metric(row: dict) -> bool:
    """Whether a result (or row) carries its metric in the task-metric columns: a metric other than accuracy, or
    an accuracy a task reports there (GLUE's SST-2) instead of in early_stop_test_accuracy."""
    return row.get("metric") not in (None, "", "accuracy") or (
        row.get("early_stop_test_accuracy") in (None, "") and row.get("early_stop_test_metric") not in (None, ""))


def transfer_metric(rows: list[dict]) -> str:
    """The column of `rows` holding their primary metric at early stop: accuracy, or the task's own metric."""
    return "early_stop_test_metric" if any(_reports_own_metric(row) for row in rows) else "early_stop_test_accuracy"


def write_transfer_csv(path: Path, rows: list[dict]) -> Path:
    """Write rows with TRANSFER_COLUMNS, and TASK_METRIC_COLUMNS where a row has a metric other than accuracy
    (plain CSV: readable without ticketlab), atomically."""
    extra = TASK_METRIC_COLUMNS if transfer_metric(rows) == "early_stop_test_metric" else ()
    return write_csv(path, TRANSFER_COLUMNS + extra, rows)


ROW_VARIANTS = (TRANSFERRED, RANDOM_TICKET, TARGET_FOUND, DENSE)
TRANSFER_INT_COLUMNS = ("trial", "level", "early_stop_iteration", "final_iteration")
TRANSFER_FLOAT_COLUMNS = ("weights_remaining_percent", "early_stop_test_accuracy", "early_stop_val_loss",
                          "final_test_accuracy", "final_train_accuracy")


def read_transfer_csv(path: str | Path) -> list[dict]:
    """transfer.csv's rows with numbers parsed (trial/level/iterations as int, the rest of the metrics float; an
    empty metric cell is NaN). ConfigError naming the file, line and cell for a file that is not UTF-8 CSV, lacks
    a column, has a short row or a cell that is not a number, or has no rows."""
    path = Path(path)
    try:
        lines = path.read_bytes().decode("utf-8").splitlines()
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not a transfer.csv (not UTF-8 text); rerun `ticketlab transfer` to rewrite "
                          "it") from None
    try:
        table = list(csv.reader(lines))
    except csv.Error as error:
        raise ConfigError(f"{path} is not a transfer.csv ({error})") from None
    table = [row for row in table if any(cell.strip() for cell in row)]
    if not table:
        raise ConfigError(f"{path} is empty; a transfer.csv has a header and one row per transfer job")
    header = [cell.strip() for cell in table[0]]
    missing = [column for column in TRANSFER_COLUMNS if column not in header]
    if missing:
        raise ConfigError(f"{path}: missing column(s) {', '.join(missing)}")
    if len(table) == 1:
        raise ConfigError(f"{path} has no rows; run `ticketlab transfer` to completion first")
    return [_transfer_row(dict(zip(header, cells)), f"{path}:{number}", len(header), len(cells))
            for number, cells in enumerate(table[1:], start=2)]


def _transfer_row(cells: dict[str, str], where: str, expected: int, found: int) -> dict:
    if found != expected:
        raise ConfigError(f"{where}: expected {expected} fields, got {found} (a truncated or damaged row)")
    row = dict(cells)
    for column in ("source", "source_data", "target", "variant"):
        if not row[column].strip():
            raise ConfigError(f"{where}: column {column!r} is empty")
    if row["variant"] not in ROW_VARIANTS:
        raise ConfigError(f"{where}: variant {row['variant']!r} unknown; allowed: {', '.join(ROW_VARIANTS)}")
    for column in TRANSFER_INT_COLUMNS:
        text = row[column].strip()
        if not (text.isascii() and text.isdigit() or column not in ("trial", "level") and text == ""):
            raise ConfigError(f"{where}: column {column!r} is {text!r}, not an integer >= 0")
        row[column] = int(text) if text else None
    for column in TRANSFER_FLOAT_COLUMNS + tuple(name for name in TASK_METRIC_COLUMNS[1:] if name in row):
        text = row[column].strip()
        try:
            row[column] = float(text) if text else math.nan
        except ValueError:
            raise ConfigError(f"{where}: column {column!r} is {text!r}, not a number") from None
    if not 0 < row["weights_remaining_percent"] <= 100:
        raise ConfigError(f"{where}: weights_remaining_percent {row['weights_remaining_percent']!r} is not a "
                          "percent in (0, 100]")
    return row


def check_transfer_rows(transfer_dir: Path, rows: list[dict]) -> None:
    """ConfigError unless `rows` (read from `transfer_dir`'s transfer.csv) agree with the sealed results they were
    written from: each source directory's transfer jobs and the target's own run (transfer.json names it), all
    checked as every command checks a run's finished jobs (IntegrityError naming damaged files). A changed number
    or a lost row of a transfer job is refused."""
    csv_path = transfer_dir / "transfer.csv"
    records: dict[tuple[str, int, int, str], dict] = {}
    for source_dir in sorted(path for path in transfer_dir.iterdir() if (path / SOURCE_RECORD).is_file()):
        for job_dir, record in read_finished_jobs(source_dir).items():
            records[(source_dir.name, *job_key_of(job_dir))] = record
    sources = {key[0] for key in records}
    try:
        target_run = Path(read_json(transfer_dir / "transfer.json")["target_run"])
    except (OSError, ValueError, KeyError, TypeError):
        target_run = None
    if target_run is not None and target_run.is_dir():
        for job_dir, record in read_finished_jobs(target_run).items():
            trial, level, variant = job_key_of(job_dir)
            if variant in (DENSE, winning_ticket()):
                records[(target_run.name, trial, level, DENSE if variant == DENSE else TARGET_FOUND)] = record
    seen = set()
    for row in rows:
        key = (row["source"], row["trial"], row["level"], row["variant"])
        seen.add(key)
        record = records.get(key)
        if record is None:
            continue
        for column in TRANSFER_INT_COLUMNS[2:] + TRANSFER_FLOAT_COLUMNS + TASK_METRIC_COLUMNS[1:]:
            if column not in row:  # a file without the task-metric columns (an accuracy task's)
                continue
            expected, value = record.get(column), row[column]
            missing = [item is None or isinstance(item, float) and math.isnan(item) for item in (expected, value)]
            if any(missing) and not all(missing) or not any(missing) and float(value) != float(expected):
                raise ConfigError(f"{csv_path}: {column} of {row['source']} trial {row['trial']} level "
                                  f"{row['level']} {row['variant']} is {value!r}, its sealed result.json says "
                                  f"{expected!r} (edited or damaged); rerun `ticketlab transfer` to rewrite it")
    lost = sorted(key for key in records if key[0] in sources and key not in seen)
    if lost:
        raise ConfigError(f"{csv_path}: no row for the finished transfer job {lost[0][0]} trial {lost[0][1]} level "
                          f"{lost[0][2]} {lost[0][3]} (rows lost); rerun `ticketlab transfer` to rewrite it")


def transfer_matrix(rows: list[dict], at_percent: float, metric: str = "early_stop_test_accuracy") -> dict:
    """Source-by-target matrix of mean `metric` at the level nearest `at_percent` weights remaining (nearest on
    a log scale, per (source, target) pair). Sources and targets are data labels ('fashion_mnist 0-4 adam');
    the target's own tickets sit where the source is the target. Returns {"sources", "targets", "cells"} with
    cells[(source, target)] = {"value", "weights_remaining_percent", "trials"}."""
    if not (isinstance(at_percent, (int, float)) and 0 < at_percent <= 100):
        raise ConfigError(f"--at {at_percent!r} must be a percent in (0, 100]")
    groups: dict[tuple[str, str], dict[int, list[dict]]] = {}
    for row in rows:
        if row["variant"] in (TRANSFERRED, TARGET_FOUND) and row["level"] > 0:
            groups.setdefault((row["source_data"], row["target"]), {}).setdefault(row["level"], []).append(row)
    cells = {}
    for pair, by_level in groups.items():
        def distance(level: int) -> float:
            mean = sum(r["weights_remaining_percent"] for r in by_level[level]) / len(by_level[level])
            return abs(math.log(mean / at_percent))

        level = min(by_level, key=distance)
        chosen = by_level[level]
        cells[pair] = {"value": sum(r[metric] for r in chosen) / len(chosen),
                       "weights_remaining_percent": sum(r["weights_remaining_percent"] for r in chosen) / len(chosen),
                       "trials": len(chosen), "level": level}
    sources = sorted({pair[0] for pair in cells})
    targets = sorted({pair[1] for pair in cells})
    return {"sources": sources, "targets": targets, "cells": cells}


def write_matrix_csv(path: Path, matrix: dict) -> Path:
    """One row per source, one column per target (mean accuracy; empty where that pair was not run)."""
    rows = []
    for source in matrix["sources"]:
        cells = [matrix["cells"].get((source, target)) for target in matrix["targets"]]
        rows.append([source, *("" if cell is None else f"{cell['value']:.4f}" for cell in cells)])
    return write_csv(path, ["source \\ target", *matrix["targets"]], rows)
