"""A tiny finished run shared by the report tests of a module (report.html, runs, compare, TensorBoard)."""

from __future__ import annotations

import shutil

import pytest

from ticketlab.config import ExperimentConfig, ModelConfig, PruneConfig, TrainConfig


def tiny_config(**changes) -> ExperimentConfig:
    """Two trials of a 24-16-10 MLP, 40 steps, 2 levels, the ticket and the random control; cosine schedule so the
    logged learning rate changes from step to step."""
    config = ExperimentConfig(
        model=ModelConfig(name="mlp", hidden=(16,)),
        train=TrainConfig(optimizer="adam", lr=5e-3, batch_size=50, steps="40it", eval_every="10it",
                          schedule="cosine"),
        prune=PruneConfig(rate=0.5, output_rate=0.25, levels=2),
        variants=("iterative_reset", "random_pruning"),
        trials=2,
    )
    return config.replace(**changes) if changes else config


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_data_for_module, one_thread_for_module):
    """The directory of a finished tiny run (with its report and report.html); copy it before changing it."""
    from ticketlab.api import find_tickets

    root = tmp_path_factory.mktemp("runs")
    return find_tickets(tiny_config(), root=root, data=tiny_data_for_module, progress=False).run_dir


@pytest.fixture(scope="module")
def late_rewind_run(tiny_run, tiny_data_for_module, one_thread_for_module):
    """The tiny run's config rewound to iteration 10 instead of 0, in the same root."""
    from ticketlab.api import find_tickets

    return find_tickets(tiny_config(**{"prune.rewind": "10it"}), root=tiny_run.parent, data=tiny_data_for_module,
                        progress=False, report=False).run_dir


@pytest.fixture
def run_copy(tiny_run, tmp_path):
    """A private copy of the tiny run, to damage or cut short."""
    return shutil.copytree(tiny_run, tmp_path / "runs" / tiny_run.name)
