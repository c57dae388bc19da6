"""Learning curves from metrics.jsonl: column choice, trial alignment, and the figure files."""

from __future__ import annotations

import json

import numpy as np

from ticketlab.report.curves import _aligned, curve_column, draw_learning_curves, read_curves


def write_job(run_dir, trial, level, variant, rows):
    job = run_dir / f"trial_{trial}" / f"level_{level:02d}" / variant
    job.mkdir(parents=True)
    (job / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows) + '{"step": 9', "utf-8")


def test_curves_align_trials_and_draw(tmp_path):
    for trial in (0, 1):
        write_job(tmp_path, trial, 0, "dense", [{"step": s, "val_return": 10.0 * s + trial} for s in (10, 20)])
        for level in (1, 2):
            for variant in ("iterative_reset", "random_pruning"):
                rows = [{"step": s, "val_return": float(s * level + trial), "val_loss": 1.0} for s in (10, 20, 30)]
                write_job(tmp_path, trial, level, variant, rows[: 3 - trial])  # trial 1 stopped one row early
    curves = read_curves(tmp_path)  # the cut last line of every file is skipped
    assert curve_column(curves) == "val_return"
    steps, values = _aligned(curves[(2, "iterative_reset")], "val_return")
    assert steps == [10, 20, 30]
    np.testing.assert_array_equal(values, [[20, 40, 60], [21, 41, np.nan]])
    paths = draw_learning_curves(tmp_path, tmp_path / "curves", {0: 100.0, 1: 80.0, 2: 64.0}, title="t")
    assert [path.suffix for path in paths] == [".png", ".svg"] and paths[0].stat().st_size > 10_000


def test_no_curve_columns_no_figure(tmp_path):
    write_job(tmp_path, 0, 0, "dense", [{"step": 1, "train_loss": 2.0}])
    assert draw_learning_curves(tmp_path, tmp_path / "curves", {}) is None
