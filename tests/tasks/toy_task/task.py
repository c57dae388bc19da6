"""The toy task's TASK: a small MLP regressing a random linear map of 6 inputs, trained with exact masks."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ticketlab.tasks.base import Task
from ticketlab.tasks.metrics import Metric

from . import ToySettings

MSE = Metric("mse", higher_is_better=False, label="test MSE", log_scale=True)


@dataclass(frozen=True)
class Points:
    x: torch.Tensor
    y: torch.Tensor

    def to(self, device):
        return Points(self.x.to(device), self.y.to(device))


@dataclass(frozen=True)
class ToyResult:
    values: dict

    def to_dict(self) -> dict:
        return dict(self.values)


def _splits(data: Points) -> dict[str, slice]:
    held_out = (len(data.x) - 40) // 2
    return {"train": slice(0, 40), "val": slice(40, 40 + held_out), "test": slice(40 + held_out, len(data.x))}


def load_points(settings: ToySettings) -> Points:
    """`settings.samples` points with targets from a fixed linear map, plus `settings.noise` noise (seeded)."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(settings.samples, 6, generator=generator)
    y = x @ torch.randn(6, 1, generator=generator)
    return Points(x, y + settings.noise * torch.randn(y.shape, generator=generator))


def evaluate(model, data: Points, split: str) -> dict[str, float]:
    rows = _splits(data)[split]
    with torch.no_grad():
        loss = nn.functional.mse_loss(model(data.x[rows]), data.y[rows]).item()
    return {"loss": loss, "mse": loss}


def initialize(model, config, seed: int):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(0.3 * torch.randn(parameter.shape, generator=generator))
    return model


def train(model, data: Points, config, *, masks, data_seed, start_step=0, total_steps=None, optimizer_state=None,
          job_dir=None, snapshot_steps=(), on_snapshot=None, on_progress=None, checkpoint_interval_s=30.0,
          stop_after_step=None, augment=None):
    """Full-batch SGD with the masks applied to weights and gradients; early stopping at the best validation loss."""
    total = total_steps if total_steps is not None else 20
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr)
    parameters = dict(model.named_parameters())
    rows = _splits(data)["train"]
    with torch.no_grad():
        for name, mask in masks.items():
            parameters[name].mul_(mask)
    best = (float("inf"), -1)
    for step in range(start_step, total):
        if step in snapshot_steps and on_snapshot:
            on_snapshot(step, model, optimizer)
        loss = nn.functional.mse_loss(model(data.x[rows]), data.y[rows])
        optimizer.zero_grad()
        loss.backward()
        with torch.no_grad():
            for name, mask in masks.items():
                parameters[name].grad.mul_(mask)
            optimizer.step()
            for name, mask in masks.items():
                parameters[name].mul_(mask)
        best = min(best, (evaluate(model, data, "val")["loss"], step + 1))
        if on_progress:
            on_progress(1)
    test = evaluate(model, data, "test")["mse"]
    return ToyResult({"early_stop_iteration": best[1], "early_stop_val_loss": best[0], "early_stop_test_metric": test,
                      "final_iteration": total, "final_val_loss": best[0], "final_test_metric": test})


TASK = Task(
    name="toy_package",
    load_data=lambda data_config: load_points(ToySettings()),
    build_model=lambda config, data: nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 1)),
    initialize=initialize,
    train=train,
    evaluate=evaluate,
    metric=lambda config: MSE,
    steps_per_epoch=lambda data, train_config: 1,
    load_experiment_data=lambda config: load_points(config.toy),  # the task's own section
)
