"""`ticketlab compare`: two runs that differ in rewinding on one figure, the differing config values, and the
one-line refusals of bad input."""

from __future__ import annotations

import csv
import json
import re

import pytest

from ticketlab.cli import main


def test_compare_two_rewinds(tiny_run, late_rewind_run, tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["compare", str(tiny_run), str(late_rewind_run), "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    for name in ("comparison.png", "comparison.svg", "comparison.html"):
        assert (out / name).stat().st_size > 1000 and str(out / name) in printed
    page = (out / "comparison.html").read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    # the one differing field, with each run's value; the default labels say it too
    assert "<tr><td><code>prune.rewind</code></td><td>0it</td><td>10it</td></tr>" in page
    assert "<th>prune.rewind=0it</th><th>prune.rewind=10it</th>" in page
    svg = (out / "comparison.svg").read_text()
    assert "prune.rewind=0it" in svg and "prune.rewind=10it" in svg  # the legend
    with open(late_rewind_run / "results.csv") as handle:
        level2 = [float(row["early_stop_test_metric"]) for row in csv.DictReader(handle)
                  if row["variant"] == "iterative_reset" and row["level"] == "2"]
    assert f"{100 * sum(level2) / len(level2):.2f} ± " in page


def test_compare_labels(tiny_run, late_rewind_run, tmp_path):
    assert main(["compare", str(tiny_run), str(late_rewind_run), "--labels", "reset, late",
                 "--output", str(tmp_path)]) == 0
    assert "<th>reset</th><th>late</th>" in (tmp_path / "comparison.html").read_text()


@pytest.mark.parametrize("case, message", [
    ("one run", "compare needs at least two run directories, got 1"),
    ("labels", "--labels gives 3 labels for 2 run directories; give one label per run"),
    ("missing", "does not exist"),
    ("not a run", "is not a run directory (no readable config.json)"),
    ("twice", "is given twice"),
    ("task", "runs of different tasks (classification, language) cannot be compared on one axis"),
    ("metric", "runs measure different metrics (accuracy, perplexity)"),
    ("variant", "--variant 'finetune' has no results in"),
])
def test_compare_refuses_in_one_line(case, message, tiny_run, late_rewind_run, run_copy, tmp_path, capsys):
    first, second = str(tiny_run), str(late_rewind_run)
    argv = {"one run": [first], "labels": [first, second, "--labels", "a,b,c"],
            "missing": [first, str(tmp_path / "gone")], "not a run": [first, str(tmp_path)],
            "twice": [first, first], "variant": [first, second, "--variant", "finetune"],
            }.get(case, [first, str(run_copy)])
    if case == "task":
        stored = json.loads((run_copy / "config.json").read_text())
        stored["config"]["task"] = "language"
        (run_copy / "config.json").write_text(json.dumps(stored))
    if case == "metric":
        text = (run_copy / "results.csv").read_text()
        (run_copy / "results.csv").write_text(text.replace(",accuracy,", ",perplexity,"))
    assert main(["compare", *argv, "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("ticketlab: error: ") and message in err
    assert not (tmp_path / "out").exists()


def test_compare_refuses_a_run_whose_results_csv_disagrees_with_its_sealed_results(tiny_run, late_rewind_run,
                                                                                    tmp_path, capsys):
    """compare reads a run through the checked reader `report` uses: an edited number is named, nothing drawn."""
    import shutil

    edited = tmp_path / "edited"
    shutil.copytree(late_rewind_run, edited)
    lines = (edited / "results.csv").read_text().splitlines()
    header = lines[0].split(",")
    cells = lines[-1].split(",")
    column = header.index("early_stop_test_accuracy")
    cells[column] = str(round(float(cells[column]) / 2, 4))
    (edited / "results.csv").write_text("\n".join([*lines[:-1], ",".join(cells)]) + "\n")
    assert main(["compare", str(tiny_run), str(edited), "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and str(edited) in err
    assert not (tmp_path / "out" / "comparison.png").exists()
