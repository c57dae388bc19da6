"""`ticketlab transfer-matrix` on damaged transfer.csv files: a missing column, a cell that is not a number, a
truncated row, an empty file or one that is not UTF-8 is refused in one line naming the file (exit 2), never a
traceback; a whole file gives the matrix computed by hand."""

import csv
import io
import subprocess
import sys
from pathlib import Path

import pytest

from ticketlab.cli import main
from ticketlab.errors import ConfigError
from ticketlab.lottery.transfer_results import TRANSFER_COLUMNS, read_transfer_csv


def _row(variant, level, percent, accuracy, source_data="a 0-4 adam", trial=0):
    return {"source": "run_a", "source_data": source_data, "source_optimizer": "adam", "target": "a 5-9 adam",
            "optimizer": "adam", "trial": trial, "level": level, "weights_remaining_percent": percent,
            "variant": variant, "early_stop_iteration": 20, "early_stop_test_accuracy": accuracy,
            "early_stop_val_loss": 0.5, "final_test_accuracy": accuracy, "final_train_accuracy": 0.9,
            "final_iteration": 30}


ROWS = [_row("transferred", 1, 50.0, 0.8), _row("transferred", 2, 25.0, 0.7),
        _row("transferred", 2, 25.0, 0.75, trial=1), _row("target_found", 2, 24.0, 0.6, source_data="a 5-9 adam"),
        _row("dense", 0, 100.0, 0.9, "a 5-9 adam")]


def _text(rows=ROWS, columns=TRANSFER_COLUMNS) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _matrix(tmp_path, capsys, payload: bytes) -> tuple[int, str]:
    path = tmp_path / "transfer.csv"
    path.write_bytes(payload)
    code = main(["transfer-matrix", str(path), "--at", "25", "--out", str(tmp_path / "m")])
    return code, capsys.readouterr().err


def test_a_whole_file_gives_the_matrix_computed_by_hand(tmp_path, capsys):
    code, error = _matrix(tmp_path, capsys, _text().encode())
    assert code == 0 and error == ""
    lines = (tmp_path / "m" / "matrix.csv").read_text().splitlines()
    assert lines == ["source \\ target,a 5-9 adam", "a 0-4 adam,0.7250", "a 5-9 adam,0.6000"]  # (0.7 + 0.75) / 2


def _without(column: str) -> str:
    return _text(columns=tuple(name for name in TRANSFER_COLUMNS if name != column))


@pytest.mark.parametrize("payload, expected", [
    (_without("early_stop_test_accuracy").encode(), "missing column(s) early_stop_test_accuracy"),
    (_text().replace(",0.8,", ",abc,", 1).encode(), "column 'early_stop_test_accuracy' is 'abc', not a number"),
    (_text().rsplit(",", 5)[0].encode(), "expected 15 fields, got 10"),
    (_text().replace(",1,50.0,", ",x,50.0,", 1).encode(), "column 'level' is 'x', not an integer >= 0"),
    (_text().replace(",50.0,", ",0,", 1).encode(), "weights_remaining_percent 0.0 is not a percent in (0, 100]"),
    (_text().replace("transferred", "transfered", 1).encode(), "variant 'transfered' unknown"),
    (b"", "is empty"),
    (_text(rows=[]).encode(), "has no rows"),
    (b"\xff\xfe" + _text().encode(), "not UTF-8"),
])
def test_a_damaged_transfer_csv_is_one_line(tmp_path, capsys, payload, expected):
    code, error = _matrix(tmp_path, capsys, payload)
    lines = error.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("ticketlab: error: "), error
    assert expected in lines[0] and str(tmp_path / "transfer.csv") in lines[0]
    assert not (tmp_path / "m" / "matrix.csv").exists()


def test_the_reader_parses_numbers(tmp_path):
    path = tmp_path / "transfer.csv"
    path.write_text(_text())
    rows = read_transfer_csv(path)
    assert [(row["level"], row["weights_remaining_percent"], row["early_stop_test_accuracy"]) for row in rows][:2] == [
        (1, 50.0, 0.8), (2, 25.0, 0.7)]
    path.write_text(_text().replace(",20,", ",20.5,", 1))
    with pytest.raises(ConfigError, match="early_stop_iteration"):
        read_transfer_csv(path)


def test_the_installed_executable_refuses_an_empty_transfer_csv(tmp_path):
    (tmp_path / "transfer.csv").write_text("")
    installed = Path(sys.executable).parent / "ticketlab"
    command = [str(installed)] if installed.exists() else [sys.executable, "-m", "ticketlab"]
    done = subprocess.run([*command, "transfer-matrix", str(tmp_path), "--at", "10", "--out", str(tmp_path / "m")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "is empty" in done.stderr, done.stderr


def _sealed_job(job_dir: Path, row: dict) -> None:
    from ticketlab.lottery.integrity import seal_result
    from ticketlab.store import write_json

    job_dir.mkdir(parents=True)
    write_json(job_dir / "result.json", seal_result(job_dir, {key: row[key] for key in TRANSFER_COLUMNS[5:]}))


@pytest.fixture
def transfer_dir(tmp_path):
    """A transfer directory in the real layout: a source directory with sealed transfer jobs, the target's own
    run (named in transfer.json) with its sealed jobs, and transfer.csv written from them."""
    from ticketlab.store import write_json

    transfer = tmp_path / "transfer_x"
    target_run = tmp_path / "target_run"
    source_rows = [_row("transferred", 1, 50.0, 0.8), _row("transferred", 2, 25.0, 0.7)]
    target_rows = [dict(_row("target_found", 2, 24.0, 0.6, "a 5-9 adam"), source="target_run"),
                   dict(_row("dense", 0, 100.0, 0.9, "a 5-9 adam"), source="target_run")]
    (transfer / "run_a").mkdir(parents=True)
    write_json(transfer / "run_a" / "source.json", {"source_config": {}})
    for row in source_rows:
        _sealed_job(transfer / "run_a" / "trial_0" / f"level_{row['level']:02d}" / row["variant"], row)
    for row, variant in zip(target_rows, ("iterative_reset", "dense")):
        _sealed_job(target_run / "trial_0" / f"level_{row['level']:02d}" / variant, row)
    write_json(transfer / "transfer.json", {"target_run": str(target_run)})
    (transfer / "transfer.csv").write_text(_text(source_rows + target_rows))
    return transfer


def test_a_transfer_directory_is_checked_against_its_sealed_jobs(transfer_dir, tmp_path, capsys):
    out = ["--at", "25", "--out", str(tmp_path / "m")]
    assert main(["transfer-matrix", str(transfer_dir), *out]) == 0
    capsys.readouterr()
    text = (transfer_dir / "transfer.csv").read_text()
    (transfer_dir / "transfer.csv").write_text(text.replace(",0.7,", ",0.9,", 1))  # an edited accuracy
    assert main(["transfer-matrix", str(transfer_dir), *out]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "early_stop_test_accuracy of run_a trial 0 level 2 transferred is 0.9" in error
    (transfer_dir / "transfer.csv").write_text("\n".join(text.splitlines()[:2]) + "\n")  # rows lost
    assert main(["transfer-matrix", str(transfer_dir / "transfer.csv"), *out]) == 2
    assert "no row for the finished transfer job run_a trial 0 level 2 transferred" in capsys.readouterr().err
    (transfer_dir / "transfer.csv").write_text(text)
    (transfer_dir / "run_a" / "trial_0" / "level_01" / "transferred" / "result.json").write_bytes(b"\xff")
    assert main(["transfer-matrix", str(transfer_dir), *out]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "damaged run files:" in error and "level_01/transferred/result.json" in error


def test_an_empty_out_is_refused_before_anything_is_read(tmp_path, capsys):
    from ticketlab.cli import main

    assert main(["transfer-matrix", str(tmp_path / "nowhere"), "--at", "50", "--out", ""]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "--out ''" in error
