"""A toy task as one package, the way a new task is added: this torch-free `__init__` registers the task (its
datasets, models, and its own config section `toy`) when imported; `task.py` holds the TASK the lottery engine
calls (loaded on first use). Used by tests/tasks/test_toy_task_package.py."""

from __future__ import annotations

from dataclasses import dataclass

from ticketlab.config.checks import check_int, check_number
from ticketlab.tasks import TaskInfo, register_task


@dataclass(frozen=True)
class ToySettings:
    """The toy task's own config section (`toy` in config.json, `--toy.FIELD` on the command line)."""

    samples: int = 60  # points drawn: 40 train, the rest split between validation and test
    noise: float = 0.0  # standard deviation of the noise added to the targets

    def validate(self) -> None:
        check_int("toy.samples", self.samples, 12, 10_000)
        check_number("toy.noise", self.noise, 0, 10)


NAME = "toy_package"
INFO = register_task(NAME, TaskInfo(module=f"{__name__}.task", datasets=("toy_points",), models=("toy_mlp",),
                                    sections=(("toy", ToySettings),), label="toy regression"))
