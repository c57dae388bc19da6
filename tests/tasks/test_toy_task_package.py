"""A task is one package: tests/tasks/toy_task registers itself (datasets, models, its own config section) on
import, and `find` runs it end to end through the Python API and through `ticketlab.cli.main`, with no line of
ticketlab changed. Its section behaves like a built-in one (`config.toy`, `--toy.noise`, config.json, the hash),
other tasks refuse it, and unregistering the task removes it."""

from __future__ import annotations

import csv
import importlib
import json
import sys

import pytest
import torch
from torch import nn

from ticketlab.cli import main
from ticketlab.config import DataConfig, ExperimentConfig, ModelConfig, PruneConfig, TrainConfig, config_from_dict
from ticketlab.errors import ConfigError
from ticketlab.store import load_tensors
from ticketlab.tasks import TASKS, unregister_task
from ticketlab.tasks.data_settings import refuse_other_task_settings

PACKAGE = "tests.tasks.toy_task"


@pytest.fixture
def toy():
    """The toy package, imported (so registered) for the test and unregistered after it."""
    package = sys.modules.get(PACKAGE)
    package = importlib.reload(package) if package is not None else importlib.import_module(PACKAGE)
    yield package
    unregister_task(package.NAME)


def _config(toy, **changes) -> ExperimentConfig:
    return ExperimentConfig(
        task=toy.NAME, model=ModelConfig(name="toy_mlp"), data=DataConfig(name="toy_points"),
        train=TrainConfig(optimizer="sgd", lr=0.05, batch_size=40, steps="12it", eval_every="4it"),
        prune=PruneConfig(rate=0.3, output_rate=None, levels=2), variants=("iterative_reset", "random_pruning"),
        toy=toy.ToySettings(noise=0.1), **changes).validate()


def _rows(path) -> list[dict]:
    with open(path) as handle:
        return list(csv.DictReader(handle))


def test_the_package_registers_the_task_and_its_section(toy):
    assert toy.NAME in TASKS
    config = _config(toy)
    assert config.toy == toy.ToySettings(noise=0.1) and ExperimentConfig().toy == toy.ToySettings()
    assert config.to_dict()["toy"] == {"samples": 60, "noise": 0.1}
    assert config_from_dict(json.loads(config.to_json())) == config
    assert config.replace(**{"toy.noise": "0.1"}) == config and config.replace(**{"toy.noise": 0}).toy.noise == 0
    assert ExperimentConfig().replace(**{"toy.noise": 0.0}) == ExperimentConfig()
    assert ExperimentConfig().hash() == "44136fa355b3678a"  # a section at its defaults stays out of the hash
    with pytest.raises(ConfigError, match=r"^toy.samples 5 must be >= 12$"):
        config.replace(**{"toy.samples": 5})


def test_other_tasks_refuse_the_section_and_unregistering_removes_it(toy):
    classifier = ExperimentConfig(toy=toy.ToySettings(noise=0.5)).validate()
    with pytest.raises(ConfigError, match=r"^toy.noise 0.5 applies to toy regression only, not to classification "
                                          r"\(mnist1d\): the classification task does not use it; leave it at its "
                                          r"default 0.0$"):
        refuse_other_task_settings(classifier)
    refuse_other_task_settings(_config(toy))
    unregister_task(toy.NAME)
    with pytest.raises(ConfigError, match="unknown config key 'toy'"):
        config_from_dict({"toy": {"noise": 0.5}})
    with pytest.raises(ConfigError, match=f"unknown task '{toy.NAME}'"):
        ExperimentConfig().replace(task=toy.NAME)


def test_find_runs_the_toy_task_through_the_api(toy, tmp_path):
    from ticketlab.api import find_tickets

    result = find_tickets(_config(toy), root=tmp_path, progress=False, report=False)
    rows = _rows(result.results_csv)
    assert len(rows) == 2 * 3  # variants x (dense + 2 levels)
    assert {row["metric"] for row in rows} == {"mse"}
    stored = json.loads((result.run_dir / "config.json").read_text())["config"]
    assert stored["task"] == toy.NAME and stored["toy"] == {"samples": 60, "noise": 0.1}
    # independent check: the dense job's test MSE, recomputed here from its final weights and noisy points
    dense = result.run_dir / "trial_0" / "level_00" / "dense"
    weights = load_tensors(dense / "weights_final.safetensors")
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(60, 6, generator=generator)
    y = x @ torch.randn(6, 1, generator=generator)
    y = y + 0.1 * torch.randn(y.shape, generator=generator)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 1))
    model.load_state_dict(weights)
    with torch.no_grad():
        mse = nn.functional.mse_loss(model(x[50:]), y[50:]).item()
    final = json.loads((dense / "result.json").read_text())["final_test_metric"]
    assert final == pytest.approx(mse, rel=1e-6)


def test_find_runs_the_toy_task_through_the_cli(toy, tmp_path, capsys):
    from ticketlab.api import find_tickets

    args = ["find", "--task", toy.NAME, "--model.name", "toy_mlp", "--data.name", "toy_points", "--toy.noise", "0.1",
            "--train.optimizer", "sgd", "--train.lr", "0.05", "--train.batch_size", "40", "--steps", "12it",
            "--train.eval_every", "4it", "--levels", "2", "--prune.rate", "0.3", "--prune.output_rate", "none",
            "--variants", "iterative_reset,random_pruning", "--trials", "1", "--quiet", "--no-report",
            "--workers", "1", "--root", str(tmp_path / "cli")]
    assert main(args) == 0, capsys.readouterr().err
    [run_dir] = (tmp_path / "cli").iterdir()
    # the CLI's run, repeated through the API from its config.json: the same run directory name and results
    config = config_from_dict(json.loads((run_dir / "config.json").read_text())["config"])
    assert config.toy.noise == 0.1 and config.task == toy.NAME
    api = find_tickets(config, root=tmp_path / "api", progress=False, report=False)
    assert api.run_dir.name == run_dir.name
    assert _rows(api.results_csv) == _rows(run_dir / "results.csv")
    capsys.readouterr()
    assert main([*args[:-1], str(tmp_path / "bad"), "--toy.samples", "5"]) == 2
    assert capsys.readouterr().err.strip() == "ticketlab: error: toy.samples 5 must be >= 12"
