"""`find --log tensorboard`: TensorBoard's own reader gets back the scalars of metrics.jsonl, grouped by variant,
trial and level; the learning rate against the cosine schedule's formula; a missing package is one line."""

from __future__ import annotations

import math
import sys

import pytest

from ticketlab.cli import main
from ticketlab.store import read_json, read_jsonl

pytest.importorskip("tensorboard", reason="no tensorboard: pip install 'ticketlab[tensorboard]'")

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

from ticketlab.report.tensorboard_log import TENSORBOARD_DIR, write_run_events  # noqa: E402


def _scalars(folder) -> dict[str, list[tuple[int, float]]]:
    accumulator = EventAccumulator(str(folder))
    accumulator.Reload()
    return {tag: [(event.step, event.value) for event in accumulator.Scalars(tag)]
            for tag in accumulator.Tags()["scalars"]}


def test_event_files_hold_the_values_of_metrics_jsonl(run_copy):
    written = write_run_events(run_copy)
    assert len(written) == 10  # 2 trials x (dense + 2 levels x 2 variants)
    folder = run_copy / TENSORBOARD_DIR / "random_pruning" / "trial-1" / "level-2"
    assert folder in written
    job_dir = run_copy / "trial_1" / "level_02" / "random_pruning"
    rows = read_jsonl(job_dir / "metrics.jsonl")
    scalars = _scalars(folder)
    assert [step for step, _ in scalars["train/loss"]] == [row["step"] for row in rows] == [10, 20, 30, 40]
    for tag, column in (("train/loss", "train_loss"), ("validation/loss", "val_loss"),
                        ("validation/accuracy", "val_accuracy")):
        assert [value for _, value in scalars[tag]] == pytest.approx([row[column] for row in rows], rel=1e-6)
    remaining = read_json(job_dir / "result.json")["weights_remaining_percent"]
    assert [value for _, value in scalars["sparsity/weights_remaining_percent"]] == pytest.approx([remaining] * 4)
    # cosine from lr 5e-3 over 40 steps; the rate logged at step s is the one of the update that reached s
    expected = [5e-3 * 0.5 * (1 + math.cos(math.pi * (step - 1) / 40)) for step in (10, 20, 30, 40)]
    assert [value for _, value in scalars["train/learning_rate"]] == pytest.approx(expected, rel=1e-6)


def test_conversion_is_done_once_and_again_for_a_recomputed_job(run_copy):
    write_run_events(run_copy)
    assert write_run_events(run_copy) == []  # nothing new
    metrics = run_copy / "trial_0" / "level_01" / "iterative_reset" / "metrics.jsonl"
    rows = read_jsonl(metrics)
    rows[0]["train_loss"] = 9.5  # the job recomputed with other numbers
    metrics.write_text("".join(__import__("json").dumps(row) + "\n" for row in rows))
    folder = run_copy / TENSORBOARD_DIR / "iterative_reset" / "trial-0" / "level-1"
    assert write_run_events(run_copy) == [folder]
    assert len(list(folder.glob("events.out.tfevents.*"))) == 1
    assert _scalars(folder)["train/loss"][0] == (10, pytest.approx(9.5))


def test_find_log_tensorboard_end_to_end(tmp_path, capsys):
    argv = ["find", "--root", str(tmp_path), "--trials", "1", "--levels", "1", "--steps", "20it",
            "--train.eval_every", "10it", "--model.hidden", "16", "--variants", "iterative_reset", "--quiet",
            "--workers", "1", "--no-report", "--log", "tensorboard"]
    assert main(argv) == 0
    run_dir = next(tmp_path.iterdir())
    folders = sorted(path.relative_to(run_dir / TENSORBOARD_DIR).as_posix()
                     for path in (run_dir / TENSORBOARD_DIR).glob("*/*/*"))
    assert folders == ["dense/trial-0/level-0", "iterative_reset/trial-0/level-1"]
    scalars = _scalars(run_dir / TENSORBOARD_DIR / "dense" / "trial-0" / "level-0")
    rows = read_jsonl(run_dir / "trial_0" / "level_00" / "dense" / "metrics.jsonl")
    assert [value for _, value in scalars["validation/loss"]] == pytest.approx([row["val_loss"] for row in rows])


def test_log_tensorboard_without_the_package_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # `import tensorboard` raises ImportError
    assert main(["find", "--root", str(tmp_path), "--log", "tensorboard", "--quiet"]) == 2
    assert capsys.readouterr().err.strip() == ("ticketlab: error: --log tensorboard needs the tensorboard package: "
                                               "pip install 'ticketlab[tensorboard]'")
    assert list(tmp_path.iterdir()) == []  # refused before anything was written


def test_without_log_nothing_is_written(tiny_run):
    assert not (tiny_run / TENSORBOARD_DIR).exists()
