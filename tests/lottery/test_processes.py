"""Populations split across worker processes: the split, and the results against the in-process path."""

import csv

import pytest

from ticketlab.lottery.keys import DENSE, JobKey
from ticketlab.lottery.executors.processes import population_parts
from ticketlab.store import read_json


def test_population_parts_are_consecutive_even_and_cover_the_entry():
    entry = [JobKey(trial, 1, variant) for variant in ("iterative_reset", "random_pruning") for trial in range(5)]
    parts = population_parts(entry, 2)
    assert [len(part) for part in parts] == [5, 5] and sum(parts, []) == entry
    assert [len(part) for part in population_parts(entry, 3)] == [3, 3, 4]  # smaller first: the chains
    assert [len(part) for part in population_parts(entry[:7], 2)] == [3, 4]
    assert population_parts(entry[:1], 4) == [entry[:1]]  # never an empty part
    assert population_parts(entry, 1) == [entry]
    assert population_parts(entry, 2) == parts  # the same entry always splits the same way (resume)


def _rows(root):
    (path,) = root.glob("*/results.csv")
    with open(path) as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize("variants", ["iterative_reset,iterative_reinit,random_pruning"])
def test_two_worker_processes_train_the_populations_as_one_process_does(tmp_path, variants):
    """Each entry of the plan is split across the workers (both of a level's parts run at once), and every job
    ends with the numbers of the in-process population run (one thread per worker vs two in process: the
    tolerance of the population path; these tiny layers round alike)."""
    from ticketlab.cli import main

    arguments = ["find", "--trials", "2", "--levels", "1", "--steps", "200it", "--train.eval_every", "20it",
                 "--data.train_size", "400", "--variants", variants, "--quiet", "--no-report"]
    assert main([*arguments, "--root", str(tmp_path / "split"), "--workers", "2"]) == 0
    assert main([*arguments, "--root", str(tmp_path / "one"), "--workers", "1"]) == 0
    split, one = _rows(tmp_path / "split"), _rows(tmp_path / "one")
    assert len(split) == len(one) == 12
    for a, b in zip(split, one):
        assert (a["variant"], a["trial"], a["level"]) == (b["variant"], b["trial"], b["level"])
        assert a["early_stop_iteration"] == b["early_stop_iteration"]
        assert float(a["early_stop_test_accuracy"]) == pytest.approx(float(b["early_stop_test_accuracy"]), abs=2e-3)
    (run_dir,) = (tmp_path / "split").glob("*/")
    sizes = {key.variant: read_json(key.directory(run_dir) / "result.json")["population_size"]
             for key in (JobKey(0, 0, DENSE), JobKey(0, 1, "iterative_reset"), JobKey(1, 1, "random_pruning"))}
    # dense: 2 jobs -> 1 + 1; level 1: 6 jobs -> 3 + 3
    assert sizes == {DENSE: 1, "iterative_reset": 3, "random_pruning": 3}
