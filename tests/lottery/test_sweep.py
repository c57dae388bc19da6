"""Rewind sweep: the dense run is trained once and every rewind's experiment matches a standalone run."""

import json

import pytest
import torch

from ticketlab.config import DataConfig, ExperimentConfig, ModelConfig, PruneConfig, TrainConfig
from ticketlab.data import make_splits
from ticketlab.api import find_tickets
from ticketlab.lottery.integrity import verify_run
from ticketlab.api import rewind_sweep
from ticketlab.store import load_tensors


@pytest.fixture
def tiny():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(140, 1, 8, 8, generator=generator)
    y = (x.mean(dim=(1, 2, 3)) > 0).long()
    data = make_splits(x[:100], y[:100], x[100:], y[100:], validation_size=20)
    config = ExperimentConfig(
        model=ModelConfig(name="conv2", width=2),
        data=DataConfig(name="mnist1d", augment=True),  # replaced by the custom tensors
        train=TrainConfig(optimizer="sgd", lr=0.05, momentum=0.9, batch_size=16, steps="12it", eval_every="4it"),
        prune=PruneConfig(scope="global", rate=0.5, output_rate=None, levels=2),
        variants=("iterative_reset",),
        trials=1,
    )
    return config, data


def test_sweep_trains_dense_once_and_matches_standalone_runs(tiny, tmp_path):
    config, data = tiny
    result = rewind_sweep(config, ["0it", "3it"], root=tmp_path / "sweep", data=data, progress=False, report=False)
    dense_times = set()
    for text, experiment in result.experiments.items():
        dense = json.loads((experiment.run_dir / "trial_0/level_00/dense/result.json").read_text())
        dense_times.add(dense["wall_time_s"])  # copied, not retrained: identical records
        assert len(experiment.rows) == 3
        assert verify_run(experiment.run_dir) == []  # the copied dense record is sealed with the run's own files
    assert len(dense_times) == 1
    rewind_dir = result.experiments["3it"].run_dir / "trial_0/level_00/dense"
    assert load_tensors(rewind_dir / "weights_rewind.safetensors")
    assert not (result.experiments["0it"].run_dir / "trial_0/level_00/dense/weights_rewind.safetensors").exists()

    standalone = find_tickets(config.replace(**{"prune.rewind": "3it"}), root=tmp_path / "alone", data=data,
                              progress=False, report=False)
    alone_rewind = load_tensors(standalone.run_dir / "trial_0/level_00/dense/weights_rewind.safetensors")
    for name, value in load_tensors(rewind_dir / "weights_rewind.safetensors").items():
        assert torch.equal(value, alone_rewind[name]), name
    swept = {row["level"]: row["early_stop_test_accuracy"] for row in result.experiments["3it"].rows}
    assert swept == {row["level"]: row["early_stop_test_accuracy"] for row in standalone.rows}

    assert [path.suffix for path in result.figure_files] == [".png", ".svg"]
    assert all(path.stat().st_size > 1000 for path in result.figure_files)
    lines = result.summary_csv.read_text().splitlines()
    assert lines[0].startswith("rewind,level,weights_remaining_percent") and len(lines) == 1 + 2 * 3

    again = rewind_sweep(config, ["0it", "3it"], root=tmp_path / "sweep", data=data, progress=False, report=False)
    assert again.sweep_dir == result.sweep_dir  # everything done: nothing retrained


def test_sweep_command_parses_without_torch():
    import subprocess
    import sys

    code = (
        "import argparse, sys\n"
        "from ticketlab.cli.sweep import add_command as add_sweep_command\n"
        "parser = argparse.ArgumentParser(); sub = parser.add_subparsers(dest='command')\n"
        "add_sweep_command(sub)\n"
        "args = parser.parse_args(['sweep', '--rewinds', '0it,500it', '--preset', 'resnet20_tiny', '--model.width', '8'])\n"
        "print(args.rewinds, getattr(args, 'set:model.width'), 'torch' in sys.modules)\n"
    )
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.split() == ["0it,500it", "8", "False"]


def test_sweep_asks_the_task_how_many_examples_a_batch_must_fit_in(tiny, tmp_path, monkeypatch):
    import dataclasses

    from ticketlab.errors import ConfigError
    from ticketlab.lottery import sweep as sweep_module
    from ticketlab.tasks.classification import TASK

    config, data = tiny
    assert TASK.train_examples(data) == 80
    too_large = config.replace(**{"train.batch_size": 81})
    with pytest.raises(ConfigError, match="train.batch_size 81 is larger than the 80 training examples"):
        rewind_sweep(too_large, ["0it", "3it"], root=tmp_path / "sweep", data=data, progress=False, report=False)
    ten_examples = dataclasses.replace(TASK, train_examples=lambda data: 10)
    monkeypatch.setattr(sweep_module, "load_task", lambda name: ten_examples)
    with pytest.raises(ConfigError, match="train.batch_size 16 is larger than the 10 training examples"):
        rewind_sweep(config, ["0it", "3it"], root=tmp_path / "sweep", data=data, progress=False, report=False)
    assert not (tmp_path / "sweep").exists()
