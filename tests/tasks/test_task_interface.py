"""The lottery layer runs any task through `ticketlab.tasks.base.Task` alone: a toy regression task, defined here
and registered for the test, goes through find_tickets, rewinding, random pruning, the report and the sweep."""

from __future__ import annotations

import csv
import subprocess
import sys
from dataclasses import dataclass

import pytest
import torch
from torch import nn

from ticketlab.config import ExperimentConfig, ModelConfig, DataConfig, TrainConfig, PruneConfig
from ticketlab.errors import ConfigError
from ticketlab.tasks import TASKS, TaskInfo, load_task
from ticketlab.tasks.base import GENERIC_RESULT_KEYS, Task
from ticketlab.tasks.metrics import METRICS, Metric


@dataclass(frozen=True)
class ToyData:
    x: torch.Tensor
    y: torch.Tensor

    def to(self, device):
        return ToyData(self.x.to(device), self.y.to(device))


@dataclass(frozen=True)
class ToyResult:
    values: dict

    def to_dict(self) -> dict:
        return dict(self.values)


def _toy_train(model, data, config, *, masks, data_seed, start_step=0, total_steps=None, optimizer_state=None,
               job_dir=None, snapshot_steps=(), on_snapshot=None, on_progress=None, checkpoint_interval_s=30.0,
               stop_after_step=None, augment=None):
    total = total_steps if total_steps is not None else 20
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr)
    parameters = dict(model.named_parameters())
    with torch.no_grad():
        for name, mask in masks.items():
            parameters[name].mul_(mask)
    best = (float("inf"), -1)
    for step in range(start_step, total):
        if step in snapshot_steps and on_snapshot:
            on_snapshot(step, model, optimizer)
        loss = nn.functional.mse_loss(model(data.x[:40]), data.y[:40])
        optimizer.zero_grad()
        loss.backward()
        with torch.no_grad():
            for name, mask in masks.items():
                parameters[name].grad.mul_(mask)
            optimizer.step()
            for name, mask in masks.items():
                parameters[name].mul_(mask)
        val = _toy_evaluate(model, data, "val")["loss"]
        best = min(best, (val, step + 1))
        if on_progress:
            on_progress(1)
    test = _toy_evaluate(model, data, "test")["mse"]
    return ToyResult({"early_stop_iteration": best[1], "early_stop_val_loss": best[0], "early_stop_test_metric": test,
                      "final_iteration": total, "final_val_loss": best[0], "final_test_metric": test})


def _toy_evaluate(model, data, split):
    rows = {"train": slice(0, 40), "val": slice(40, 50), "test": slice(50, 60)}[split]
    with torch.no_grad():
        loss = nn.functional.mse_loss(model(data.x[rows]), data.y[rows]).item()
    return {"loss": loss, "mse": loss}


def _toy_initialize(model, config, seed):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(0.3 * torch.randn(parameter.shape, generator=generator))
    return model


def _toy_data(config):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(60, 6, generator=generator)
    return ToyData(x, x @ torch.randn(6, 1, generator=generator))


TOY_TASK = Task(
    name="toy",
    load_data=_toy_data,
    build_model=lambda config, data: nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 1)),
    initialize=_toy_initialize,
    train=_toy_train,
    evaluate=_toy_evaluate,
    metric=lambda config: METRICS["mse"],
    steps_per_epoch=lambda data, config: 4,
)


@pytest.fixture
def toy_task(monkeypatch):
    module = type(sys)("toy_task_module")
    module.TASK = TOY_TASK
    monkeypatch.setitem(sys.modules, "toy_task_module", module)
    monkeypatch.setitem(TASKS, "toy", TaskInfo(module="toy_task_module", datasets=("toy_data",), models=("toy_net",)))
    monkeypatch.setitem(METRICS, "mse", Metric("mse", higher_is_better=False, label="test MSE", log_scale=True))
    return TOY_TASK


def toy_config(**changes) -> ExperimentConfig:
    config = ExperimentConfig(
        task="toy", model=ModelConfig(name="toy_net"), data=DataConfig(name="toy_data"),
        train=TrainConfig(optimizer="sgd", lr=0.05, steps="20it", eval_every="5it"),
        prune=PruneConfig(rate=0.3, output_rate=None, levels=2, rewind="2it"),
        variants=("iterative_reset", "iterative_reinit", "random_pruning"), trials=2,
    )
    return config.replace(**changes) if changes else config


def test_registry_is_torch_free_and_names_every_task():
    code = "import sys, ticketlab.tasks, ticketlab.config; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"
    assert {"classification", "language"} <= set(TASKS)
    assert load_task("classification").name == "classification"


def test_dataset_of_another_task_is_one_clear_error():
    with pytest.raises(ConfigError, match="belongs to task 'language'"):
        ExperimentConfig().replace(**{"data.name": "ptb"})
    with pytest.raises(ConfigError, match="unknown task 'nope'"):
        ExperimentConfig().replace(task="nope")


def test_lottery_engine_runs_a_task_it_does_not_know(toy_task, tmp_path):
    from ticketlab.api import find_tickets
    from ticketlab.store import load_tensors

    result = find_tickets(toy_config(), root=tmp_path, progress=False)
    with open(result.results_csv) as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 3 * 2 * 3  # variants x trials x (dense + 2 levels)
    assert {row["metric"] for row in rows} == {"mse"}
    assert all(row["early_stop_test_accuracy"] == "" and float(row["early_stop_test_metric"]) > 0 for row in rows)
    remaining = sorted({round(float(row["weights_remaining_percent"]), 2) for row in rows})
    assert remaining[-1] == 100.0 and remaining[0] < 55  # two rounds of 30%
    for job in (result.run_dir / "trial_1" / "level_02").iterdir():  # masks exact, rewound start after 2 steps
        mask = load_tensors(job / "mask.safetensors")
        final = load_tensors(job / "weights_final.safetensors")
        assert all(torch.all(final[name][~mask[name]] == 0) for name in mask)
        assert __import__("json").loads((job / "result.json").read_text())["start_step"] == 2
    assert set(GENERIC_RESULT_KEYS) <= set(__import__("json").loads((job / "result.json").read_text()))
    summary = (result.run_dir / "report" / "summary.md").read_text()
    assert "test MSE" in summary and "acc" not in summary.split("###")[1]
    again = find_tickets(toy_config(), root=tmp_path, progress=False)  # everything done: nothing retrained
    assert again.rows == result.rows
