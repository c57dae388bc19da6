"""A population killed mid-training, for the resume tests: its jobs' results deleted, trained again as one stack
that checkpoints at every evaluation and stops after a given step, as a kill would leave it."""

from __future__ import annotations

from pathlib import Path

import pytest

from ticketlab.lottery import planner
from ticketlab.lottery.context import ExperimentContext
from ticketlab.lottery.experiment import model_factory
from ticketlab.training.loop import TrainingInterrupted


def kill_population_after(run_dir: Path, keys, config, data, step: int,
                          delete=("result.json", "weights_final.safetensors", "metrics.jsonl")) -> None:
    """Delete `delete` from each job of `keys` in `run_dir`, then train those jobs as one population that
    checkpoints at every evaluation and is interrupted after `step` (TrainingInterrupted, as a kill)."""
    for key in keys:
        for name in delete:
            (key.directory(run_dir) / name).unlink()
    config = config.validate()
    ctx = ExperimentContext(config=config, run_dir=run_dir, data=data, make_model=model_factory(config, data, None))
    original = planner.train_population

    def killed(*args, **kwargs):
        return original(*args, **{**kwargs, "checkpoint_interval_s": 0, "stop_after_iterations": step})

    with pytest.MonkeyPatch.context() as patch, pytest.raises(TrainingInterrupted):
        patch.setattr(planner, "train_population", killed)
        planner.run_jobs_population(ctx, keys)
