"""stability asks the task how to evaluate the linear path (Task.labelled_examples), never its name: a task without
labelled tensors in memory is evaluated split by split through its `evaluate`, with the same numbers."""

from __future__ import annotations

import csv
import dataclasses
import shutil

from ticketlab.analysis import stability as stability_module
from ticketlab.analysis.stability import StabilitySettings, stability_analysis
from ticketlab.tasks.classification import TASK

SETTINGS = StabilitySettings(rewind_steps=("0it",), levels=(1,), trials=(0,), points=3)


def _analyse(tiny_run, run_dir, monkeypatch, task):
    shutil.copytree(tiny_run.run_dir, run_dir, ignore=shutil.ignore_patterns("analysis"))
    monkeypatch.setattr(stability_module, "load_task", lambda name: task)
    result = stability_analysis(run_dir, SETTINGS, model=tiny_run.model(), data=tiny_run.data, progress=False,
                                figures=False)
    with open(result.files["interpolation_csv"]) as handle:
        return result, list(csv.DictReader(handle))


def test_a_task_without_labelled_examples_is_evaluated_through_evaluate(tiny_run, tmp_path, monkeypatch):
    evaluated = []

    def counting_evaluate(model, data, split):
        evaluated.append(split)
        return TASK.evaluate(model, data, split)

    labelled, labelled_rows = _analyse(tiny_run, tmp_path / "labelled", monkeypatch, TASK)
    through_task = dataclasses.replace(TASK, labelled_examples=None, evaluate=counting_evaluate)
    generic, generic_rows = _analyse(tiny_run, tmp_path / "generic", monkeypatch, through_task)
    # levels 0 and 1, 3 points each, train and test at every point
    assert sorted(evaluated) == ["test"] * 6 + ["train"] * 6
    # both evaluate the classifier on the whole in-memory splits with BatchNorm recomputed from the training inputs
    assert labelled_rows == generic_rows and len(labelled_rows) == 2 * SETTINGS.points
    assert labelled.rows == generic.rows


def test_classification_labelled_examples_are_the_first_examples_of_the_split(tiny_run):
    data = tiny_run.data
    inputs, labels = TASK.labelled_examples(data, "test", 7)
    assert inputs.equal(data.x_test[:7]) and labels.equal(data.y_test[:7])
    inputs, labels = TASK.labelled_examples(data, "train", None)
    assert inputs.equal(data.x_train) and labels.equal(data.y_train)
    assert TASK.train_examples(data) == len(data.x_train) == 320
