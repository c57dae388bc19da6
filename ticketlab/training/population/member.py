"""A population member: the job a caller hands in, and the bookkeeping the engine keeps for it.

Every task's population trainer (classifiers here, PPO agents in `ticketlab.tasks.rl`) walks its members through
the same life: resume from its own checkpoint, snapshots at its rewind steps, evaluation at its own cadence,
checkpoints on a timer, leaving the population at its own total. What is shared of that life is written here once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

from ticketlab.training.bookkeeping import CHECKPOINT_FILE, METRICS_FILE


@dataclass
class PopulationMember:
    """One job of a population: the arguments the task's single-job trainer (`train_model`, `train_agent`) takes.

    `model` holds the starting weights and, like the trainer's model, ends holding the trained weights (on the
    data's device). `on_snapshot(step, model, optimizer)` receives a model and a torch optimizer holding the
    member's state at that step, as the trainer would pass them.
    """

    model: nn.Module
    masks: dict[str, torch.Tensor]
    data_seed: int
    start_step: int = 0
    total_steps: int | None = None
    optimizer_state: dict[str, torch.Tensor] | None = None
    job_dir: Path | None = None
    snapshot_steps: tuple[int, ...] = ()
    on_snapshot: Callable[[int, nn.Module, torch.optim.Optimizer], None] | None = None
    mask_schedule: Callable | None = None  # a `ticketlab.training.engine.MaskSchedule`; `masks` ends as its last mask


@dataclass(eq=False)
class MemberProgress:
    """Where one member stands, outside the stacked tensors. Tasks extend it with their own record and state.

    `optimizer_steps` is the optimizer's own step count (Adam's bias correction), not the training step after a
    rewind; `has_momentum` (SGD) says whether the momentum buffer holds history (else the first step sets it).
    """

    member: PopulationMember
    index: int  # position in the caller's list
    total: int  # the step the member stops at
    step: int = -1  # -1: the member's start step
    reported_step: int = -1
    optimizer_steps: int = 0
    has_momentum: bool = False
    record: Any = None
    last_checkpoint_time: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        if self.step < 0:
            self.step = self.member.start_step
        if self.reported_step < 0:
            self.reported_step = self.member.start_step

    @property
    def metrics_path(self) -> Path | None:
        return self.member.job_dir / METRICS_FILE if self.member.job_dir else None

    @property
    def checkpoint_path(self) -> Path | None:
        return self.member.job_dir / CHECKPOINT_FILE if self.member.job_dir else None

    def snapshot_due(self) -> bool:
        """Whether the member's caller wants its model and optimizer at the current step."""
        return self.step in self.member.snapshot_steps and self.member.on_snapshot is not None

    def at_start(self) -> bool:
        """Whether the member stands at its start step and wants a snapshot there (a resumed one does not)."""
        return self.step == self.member.start_step and self.snapshot_due()

    def mask_update_due(self) -> bool:
        """Whether the member's mask schedule may change its mask before its next step (a schedule that declares
        its `updates` is asked only at those steps: the member's weights are written out for it)."""
        schedule = self.member.mask_schedule
        return schedule is not None and self.step in getattr(schedule, "updates", (self.step,))

    @property
    def settled(self) -> bool:
        """Whether the member's evaluation at its current step may become its early-stopping point (its mask
        schedule's `settled_step`, as the single-job engine rules)."""
        return self.step >= getattr(self.member.mask_schedule, "settled_step", 0)

    def checkpoint_due(self, now: float, interval_s: float) -> bool:
        """Whether the member checkpoints now (it has a job directory, is not finished and the timer ran out);
        restarts the timer when it does."""
        if self.checkpoint_path is None or self.step >= self.total or now - self.last_checkpoint_time < interval_s:
            return False
        self.last_checkpoint_time = now
        return True


def advance_members(members: Sequence[MemberProgress], eval_every: int,
                    model_and_optimizer: Callable[[int], tuple[nn.Module, torch.optim.Optimizer]]) -> list[int]:
    """Count one step done by every member (rows in order), hand out the snapshots due, and return the rows whose
    evaluation is due (every `eval_every` steps and at the member's last step)."""
    due = []
    for row, progress in enumerate(members):
        progress.step += 1
        if progress.snapshot_due():
            progress.member.on_snapshot(progress.step, *model_and_optimizer(row))
        if progress.step % eval_every == 0 or progress.step == progress.total:
            due.append(row)
    return due


def report_progress(members: Sequence[MemberProgress], rows: Sequence[int]) -> int:
    """The member-steps done by `rows` since they last reported (and mark them reported)."""
    progressed = 0
    for row in rows:
        progress = members[row]
        progressed += progress.step - progress.reported_step
        progress.reported_step = progress.step
    return progressed
