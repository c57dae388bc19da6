"""What every trainer does around its optimizer steps, written once: metrics.jsonl rows, rewind snapshots, the
evaluation cadence, progress, the checkpoint timer and `stop_after_step` (tests' simulated kill)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ticketlab.store import append_jsonl, read_jsonl, write_jsonl

CHECKPOINT_FILE = "checkpoint.safetensors"
METRICS_FILE = "metrics.jsonl"


class TrainingInterrupted(Exception):
    """Raised by `stop_after_step` to simulate a kill in tests (no checkpoint is written at that moment)."""


def reset_metrics(path: Path, keep_through_step: int | None) -> None:
    """Start a job's metrics.jsonl: empty for a fresh run, or cut back to the rows a resumed checkpoint has seen."""
    if keep_through_step is None:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_jsonl(path, [])
    else:
        write_jsonl(path, [row for row in read_jsonl(path) if row["step"] <= keep_through_step])


class StepBookkeeping:
    """metrics.jsonl started or cut back to a resumed checkpoint, rewind snapshots, the mean training loss between
    evaluations, a metrics row every `eval_every` steps and at the end, progress, checkpoints at evaluation points
    at most every `checkpoint_interval_s` seconds, and `stop_after_step`. The caller keeps the model step, the
    evaluation (`observe`) and the checkpoint writer (`save`); `engine.train_masked` is that caller for every task,
    the stacked populations keep their own per-member copy of this logic."""

    def __init__(self, *, start_step: int, total: int, eval_every: int, job_dir: Path | None,
                 snapshot_steps: tuple[int, ...] = (), on_snapshot: Callable | None = None,
                 on_progress: Callable[[int], None] | None = None, checkpoint_interval_s: float = 30.0,
                 stop_after_step: int | None = None, device=None, checkpoint_on_stop: bool = False) -> None:
        self.start_step, self.total, self.eval_every = start_step, total, eval_every
        self.checkpoint_on_stop = checkpoint_on_stop  # `stop_after_step` saves first (a kill just after a checkpoint)
        self.metrics_path = job_dir / METRICS_FILE if job_dir else None
        self.checkpoint_path = job_dir / CHECKPOINT_FILE if job_dir else None
        self.snapshot_steps, self.on_snapshot, self.on_progress = snapshot_steps, on_snapshot, on_progress
        self.checkpoint_interval_s, self.stop_after_step = checkpoint_interval_s, stop_after_step
        self.running_loss = torch.zeros((), device=device)
        self.steps_since_eval, self.reported_step, self.last_checkpoint_time = 0, start_step, time.monotonic()

    def begin(self, step: int, resumed: bool, model: nn.Module, optimizer) -> None:
        """Call once the trainer has loaded its checkpoint (`resumed`, at `step`) or found none."""
        if resumed:
            reset_metrics(self.metrics_path, keep_through_step=step)
            if self.on_progress:
                self.on_progress(step - self.start_step)
        elif self.metrics_path is not None:
            reset_metrics(self.metrics_path, keep_through_step=None)
        if step == self.start_step and self.start_step in self.snapshot_steps and self.on_snapshot:
            self.on_snapshot(step, model, optimizer)
        self.reported_step, self.last_checkpoint_time = step, time.monotonic()

    def after_step(self, step: int, loss: torch.Tensor | None, model: nn.Module, optimizer,
                   observe: Callable[[float], dict], save: Callable[[], None]) -> None:
        """Call after the optimizer step that made the model's step count `step`, with that step's `loss` (None
        for trainers that log something else, such as episode returns).

        At evaluation points `observe(mean training loss since the last one)` returns the metrics row, and `save()`
        writes the trainer's checkpoint when one is due."""
        if loss is not None:
            self.running_loss += loss.detach()
        self.steps_since_eval += 1
        if step in self.snapshot_steps and self.on_snapshot:
            self.on_snapshot(step, model, optimizer)
        if step % self.eval_every == 0 or step == self.total:
            row = observe(self.running_loss.item() / self.steps_since_eval)
            self.running_loss.zero_()
            self.steps_since_eval = 0
            if self.metrics_path is not None:
                append_jsonl(self.metrics_path, row)
            if self.on_progress:
                self.on_progress(step - self.reported_step)
            self.reported_step = step
            now = time.monotonic()
            if (self.checkpoint_path is not None and step < self.total
                    and now - self.last_checkpoint_time >= self.checkpoint_interval_s):
                save()
                self.last_checkpoint_time = now
        if self.stop_after_step is not None and self.stop_after_step <= step < self.total:
            if self.checkpoint_on_stop and self.checkpoint_path is not None:
                save()
            raise TrainingInterrupted(f"stopped after step {step}")

    def finish(self) -> None:
        """The job is done: its checkpoint is no longer needed."""
        if self.checkpoint_path is not None:
            self.checkpoint_path.unlink(missing_ok=True)
