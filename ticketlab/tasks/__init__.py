"""Task registry: each task (classification, language modelling, ...) is a package of its own.

This module is torch-free and imports no task: it only names them, with the datasets and models each accepts,
so configs can be validated (and `ticketlab --help` drawn) without loading torch. `load_task(name)` imports the
task's package and returns its `TASK` object (a `ticketlab.tasks.base.Task`).

Adding a task: write `ticketlab/tasks/<name>/` whose `__init__` (or `task` module) defines `TASK`, and add one
`TaskInfo` line below naming its module, datasets and models.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from ticketlab.errors import ConfigError


@dataclass(frozen=True)
class TaskInfo:
    """What the config layer knows of a task without importing it."""

    module: str  # the module that defines TASK
    datasets: tuple[str, ...]
    models: tuple[str, ...]


TASKS: dict[str, TaskInfo] = {
    "classification": TaskInfo(
        module="ticketlab.tasks.classification",
        datasets=("mnist1d", "fashion_mnist", "mnist", "cifar10", "cifar100", "svhn", "imagenet", "image_folder"),
        models=("mlp", "lenet300_100", "conv2", "conv4", "conv6", "vgg11", "vgg13", "vgg16", "vgg19",
                "resnet20", "resnet32", "resnet56", "resnet18", "resnet34", "resnet50", "resnet101", "resnet152"),
    ),
    "language": TaskInfo(
        module="ticketlab.tasks.language",
        datasets=("wikitext2", "ptb", "tiny_shakespeare"),
        models=("lstm",),
    ),
    "translation": TaskInfo(
        module="ticketlab.tasks.translation",
        datasets=("multi30k", "parallel"),
        models=("transformer",),
    ),
    "rl": TaskInfo(
        module="ticketlab.tasks.rl",
        datasets=("CartPole-v1", "Acrobot-v1", "MountainCar-v0", "LunarLander-v3", "Pong", "Breakout"),
        models=("mlp", "nature_cnn"),
    ),
}


def task_info(name: str) -> TaskInfo:
    """The registry entry of task `name`; ConfigError listing the known tasks otherwise."""
    if name not in TASKS:
        raise ConfigError(f"unknown task {name!r}; allowed: {', '.join(TASKS)}")
    return TASKS[name]


def task_of_dataset(dataset: str) -> str | None:
    """The task whose datasets include `dataset` (None if no task has it)."""
    return next((name for name, info in TASKS.items() if dataset in info.datasets), None)


def load_task(name: str):
    """Import task `name` and return its TASK object."""
    return importlib.import_module(task_info(name).module).TASK
