"""How a process builds the experiment it trains: the seeded model factory, and the experiment context a worker
(a local process, a Ray task) rebuilds from a plain, picklable description of the run.

Below the executors and `find_tickets`, so every one of them imports it and none imports another.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ticketlab.config import ExperimentConfig, config_from_dict
from ticketlab.lottery.context import ExperimentContext
from ticketlab.tasks import load_task, task_sources
from ticketlab.tasks.base import Task, load_task_data
from ticketlab.tasks.user_modules import import_task_sources


def model_factory(
    config: ExperimentConfig, data, model: nn.Module | None, task: Task | None = None
) -> Callable[[int], nn.Module]:
    """seed -> a freshly initialized model (a deep copy of `model`, or the task's network for the config)."""
    task = task or load_task(config.task)

    def make(seed: int) -> nn.Module:
        network = copy.deepcopy(model).cpu() if model is not None else task.build_model(config, data)
        return task.initialize(network, config, seed)

    return make


@dataclass(frozen=True)
class WorkerSpec:
    """A run as a worker process receives it: plain values only (it is pickled to processes and Ray nodes)."""

    config: dict  # ExperimentConfig.to_dict()
    run_dir: str
    device: str
    checkpoint_interval_s: float
    threads: int  # torch threads of the worker
    task_modules: tuple[str, ...] = ()  # user task files and modules to import first (`--task-module`)

    @classmethod
    def of(cls, ctx: ExperimentContext, threads: int, device: str | None = None) -> "WorkerSpec":
        return cls(ctx.config.to_dict(), str(ctx.run_dir), device or str(ctx.device), ctx.checkpoint_interval_s,
                   threads, task_sources())

    def to_dict(self) -> dict:
        return asdict(self)


def worker_context(spec: WorkerSpec, model: nn.Module | None = None, data: Any = None) -> ExperimentContext:
    """The experiment context of `spec` in this worker: torch set to the spec's threads, the data loaded (and bound
    to the run directory, as the main process binds it) or the caller's custom `data`, moved to the device."""
    torch.set_num_threads(spec.threads)
    import_task_sources(spec.task_modules)
    config = config_from_dict(spec.config)
    task = load_task(config.task)
    run_dir = Path(spec.run_dir)
    splits = (data if data is not None else task.bind_run(load_task_data(task, config), run_dir)).to(spec.device)
    return ExperimentContext(
        config=config, run_dir=run_dir, data=splits, make_model=model_factory(config, splits, model, task),
        device=torch.device(spec.device), checkpoint_interval_s=spec.checkpoint_interval_s, task=task,
    )
