"""A tiny finished lottery run (custom BatchNorm MLP on synthetic data) shared by the analysis tests."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import nn

from ticketlab.config import ExperimentConfig, PruneConfig, TrainConfig
from ticketlab.data import DataSplits, make_splits


@contextlib.contextmanager
def one_thread():
    """Tiny networks run fastest on one thread; more only wait on each other on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module", autouse=True)
def _single_thread():
    with one_thread():
        yield


class TinyBatchNormMLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(6, 12), nn.BatchNorm1d(12), nn.ReLU(), nn.Linear(12, 3))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.layers(inputs)


@dataclass(frozen=True)
class TinyRun:
    run_dir: Path
    config: ExperimentConfig
    data: DataSplits

    @staticmethod
    def model() -> nn.Module:
        return TinyBatchNormMLP()


def synthetic_splits(seed: int = 0) -> DataSplits:
    generator = torch.Generator().manual_seed(seed)
    teacher = torch.randn(6, 3, generator=generator)
    x_train, x_test = torch.randn(400, 6, generator=generator), torch.randn(120, 6, generator=generator)
    return make_splits(x_train, (x_train @ teacher).argmax(1), x_test, (x_test @ teacher).argmax(1),
                       validation_size=80, num_classes=3)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> TinyRun:
    from ticketlab.api import find_tickets

    config = ExperimentConfig(
        train=TrainConfig(optimizer="sgd", lr=0.1, momentum=0.9, batch_size=20, steps="30it", eval_every="10it"),
        prune=PruneConfig(levels=2, rewind="10it"),
        variants=("iterative_reset", "oneshot_reset"),
        trials=2,
    )
    data = synthetic_splits()
    with one_thread():
        result = find_tickets(config, root=tmp_path_factory.mktemp("runs"), model=TinyBatchNormMLP(), data=data,
                              progress=False, report=False)
    return TinyRun(result.run_dir, config, data)
