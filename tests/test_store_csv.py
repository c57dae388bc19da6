"""store.write_csv, the one CSV writer of run files: byte for byte what csv.DictWriter / csv.writer write, atomic."""

import csv
import io

import pytest

from ticketlab.store import write_csv

COLUMNS = ("trial", "level", "name", "value")


def _dict_writer_text(columns, rows) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def test_mapping_rows_match_csv_dictwriter(tmp_path):
    rows = [{"trial": 0, "level": 1, "name": "a, with comma", "value": 0.1 + 0.2},
            {"trial": 1, "level": 2, "name": 'quote "q"', "value": None},
            {"level": 3}]  # missing cells are left empty
    path = write_csv(tmp_path / "table.csv", COLUMNS, rows)
    assert path == tmp_path / "table.csv"
    assert path.read_text() == _dict_writer_text(COLUMNS, rows)
    assert list(csv.DictReader(path.open()))[0]["value"] == repr(0.1 + 0.2)
    assert [p.name for p in tmp_path.iterdir()] == ["table.csv"]  # no temporary file left behind


def test_sequence_rows_match_csv_writer(tmp_path):
    rows = [["source \\ target", "x"], ["a", ""], ("b", "0.5000")]
    write_csv(tmp_path / "matrix.csv", ["source", "x"], rows)
    expected = io.StringIO()
    writer = csv.writer(expected, lineterminator="\n")
    writer.writerow(["source", "x"])
    writer.writerows(rows)
    assert (tmp_path / "matrix.csv").read_text() == expected.getvalue()


def test_a_key_outside_the_columns_is_an_error_and_nothing_is_written(tmp_path):
    with pytest.raises(ValueError, match="'extra'"):
        write_csv(tmp_path / "table.csv", COLUMNS, [{"trial": 0, "extra": 1}])
    assert not any(tmp_path.iterdir())
