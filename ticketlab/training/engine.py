"""The one masked training loop every task's trainer runs: exact masks, bookkeeping, early stopping, checkpoints.

A task supplies a `Procedure`: its batches and loss (`train_step`), its evaluation (`observe`), its result, and
the state it adds to a checkpoint. The engine owns the rest: the optimizer and the exact-mask update
(`masked_step`), the learning rate of each step (a pure function of the step), metrics rows, rewind snapshots,
progress, the checkpoint timer and `stop_after_step` (`bookkeeping`), and the checkpoint file (`checkpoint`).
Resume: a checkpoint holds the weights, the optimizer state, the step and the task's records (and the mask in
force, when a `MaskSchedule` changes it); a task whose data order and noise are pure functions of (data_seed, step)
then repeats the uninterrupted run bit for bit.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Protocol, TypedDict

import torch
from torch import nn

from ticketlab.config import TrainConfig, parse_step
from ticketlab.store import set_aside
from ticketlab.training.bookkeeping import StepBookkeeping
from ticketlab.training.checkpoint import read_checkpoint_parts, save_checkpoint_parts
from ticketlab.training.distributed import DataParallelGroup
from ticketlab.training.early_stop import EarlyStop, TrainResult
from ticketlab.training.kernel_choice import sparse_layer_names
from ticketlab.training.masked_step import check_schedule_answer, masked_optimizer_step, prepare_masked_training
from ticketlab.training.optim import learning_rate_at, load_optimizer_tensors, optimizer_tensors
from ticketlab.training.sparse_linear import sparse_linear_layers

Update = Callable[[torch.Tensor], None]


class MaskSchedule(Protocol):
    """A mask that changes during one training run: the engine's one hook for pruning (or regrowing) while training.

    Before the optimizer step that takes the model from `step` to `step + 1` (and before the learning rate of that
    step is set), the engine calls `schedule(step, model, masks)` with the weights after `step` steps and the mask
    in force (name -> 0/1 tensor, the same names as the job's mask). It returns None to keep the mask, or the new
    mask (same names and shapes). The engine then installs it as it installs any mask: the weights and the
    optimizer state (momentum, Adam moments) of the pruned entries are set to 0, and the masked step keeps the
    weights at 0, so an entry a later mask keeps again (regrowth) starts from 0. The mask in force is saved in the
    checkpoint and restored on resume (before the call at the resumed step), so a schedule that is a pure function
    of (step, weights, mask) resumes bit for bit; when training returns, the caller's `masks` dict holds the final
    mask. A schedule may declare `settled_step`, the first step whose evaluation runs under its final mask: the
    evaluations before it are logged but never become the early-stopping point (`EarlyStop.candidate`), so a
    job's early-stop numbers are those of its final sparsity.

    Gradual magnitude pruning (`ticketlab.lottery.variants.gmp`) answers at its update steps with the magnitude
    mask at the scheduled sparsity. Dynamic sparse training plugs in the same way: SET drops the smallest kept
    magnitudes and regrows at random (a seed derived from the step keeps resume exact); RigL regrows by dense-
    gradient magnitude, which its schedule computes itself on the batch of `step` (the task's `score_losses`
    gives a seeded training loss) before it answers, since the engine's own gradients are masked.
    """

    def __call__(self, step: int, model: nn.Module, masks: dict[str, torch.Tensor]) -> dict[str, torch.Tensor] | None:
        ...


class RunOptions(TypedDict, total=False):
    """The keywords every task's trainer takes beside model, data, config, masks, data_seed and augment (the
    contract of `Task.train`); `train_masked` says what they mean."""

    start_step: int
    total_steps: int | None
    optimizer_state: dict[str, torch.Tensor] | None
    job_dir: Path | None
    snapshot_steps: tuple[int, ...]
    on_snapshot: Callable[[int, nn.Module, torch.optim.Optimizer], None] | None
    on_progress: Callable[[int], None] | None
    checkpoint_interval_s: float
    stop_after_step: int | None
    mask_schedule: MaskSchedule | None


class Procedure(Protocol):
    """What one task's training supplies to `train_masked`.

    `record`: its early-stop record, which `observe` fills.
    `checkpoint_json_keys`: the metadata entries of its checkpoint that hold JSON (its records).
    `grads_to_none`: gradients are freed (None) before each backward pass instead of zeroed; faster, but a task
    keeps the choice it was recorded with (a zeroed gradient can keep a -0.0 that a fresh one does not).
    `checkpoint_on_stop`: `stop_after_step` writes a checkpoint first (tests of a kill right after one)."""

    record: EarlyStop
    checkpoint_json_keys: tuple[str, ...]
    grads_to_none: bool
    checkpoint_on_stop: bool

    def restore(self, parts: dict, metadata: dict) -> str | None:
        """Take the task's state from a checkpoint (the engine restores weights and optimizer), or, changing
        nothing, name what the checkpoint lacks (it is then set aside and the job restarts from its start)."""

    def start(self, step: int, total: int, forward: nn.Module) -> None:
        """Training starts (or resumes) at `step` and runs to `total`; `forward` is the model to call (wrapped
        for data parallelism)."""

    def train_step(self, step: int, update: Update) -> torch.Tensor | None:
        """Take the model from `step` to `step + 1`: compute the loss and call `update(loss)` (more than once for
        several updates, as PPO's minibatches); returns the loss to log, or None for a task that logs no loss."""

    def observe(self, step: int, train_loss: float) -> dict:
        """Evaluate at `step` (record the early-stopping point) and return the metrics row."""

    def checkpoint_state(self) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, str]]:
        """(tensor groups, metadata strings) the task adds to a checkpoint at the current step."""

    def close(self) -> None:
        """Training stopped (at the end or by an error): free what `start` opened (data workers, environments)."""

    def result(self, step: int) -> TrainResult:
        """The run's result after its last step `step` (the record holds an evaluation at `step`)."""


def train_masked(
    model: nn.Module,
    config: TrainConfig,
    procedure: Procedure,
    *,
    steps_per_epoch: int,
    device,
    masks: dict[str, torch.Tensor],
    start_step: int = 0,
    total_steps: int | None = None,
    optimizer_state: dict[str, torch.Tensor] | None = None,
    job_dir: Path | None = None,
    snapshot_steps: tuple[int, ...] = (),
    on_snapshot: Callable[[int, nn.Module, torch.optim.Optimizer], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
    checkpoint_interval_s: float = 30.0,
    stop_after_step: int | None = None,
    mask_schedule: MaskSchedule | None = None,
    group: DataParallelGroup | None = None,
) -> TrainResult | None:
    """Train `model` in place from `start_step` to `total_steps` (default: config.steps, counted with
    `steps_per_epoch`) under `masks`, with `procedure`'s batches, loss and evaluation.

    With `job_dir`, metrics go to metrics.jsonl and a checkpoint is written at evaluation points at most every
    `checkpoint_interval_s` seconds; a later call with the same arguments resumes from it. `config.kernels` other
    than 'dense' runs the masked Linear layers on sparse kernels (`kernel_choice`, `sparse_linear`).
    `snapshot_steps` call `on_snapshot(step, model, optimizer)` when the model has taken exactly that many steps
    (rewind points). `on_progress(n)` reports n more steps done. `mask_schedule` changes the mask during training
    (`MaskSchedule`).

    With a data-parallel `group` (torchrun), every rank calls this with the same arguments except that only the
    leader (rank 0) passes `job_dir` and the callbacks: the leader evaluates, logs and checkpoints, and followers
    return None."""
    try:
        total = parse_step(config.steps, steps_per_epoch) if total_steps is None else total_steps
        eval_every = parse_step(config.eval_every, steps_per_epoch)
        optimizer, masked_pairs, all_parameters = prepare_masked_training(model, masks, config, optimizer_state,
                                                                          device)
        books = StepBookkeeping(start_step=start_step, total=total, eval_every=eval_every, job_dir=job_dir,
                                snapshot_steps=snapshot_steps, on_snapshot=on_snapshot, on_progress=on_progress,
                                checkpoint_interval_s=checkpoint_interval_s, stop_after_step=stop_after_step,
                                device=device, checkpoint_on_stop=procedure.checkpoint_on_stop)
        install_mask = _mask_installer(masks, masked_pairs, optimizer)
        step = _resume(books.checkpoint_path, device, model, optimizer, procedure,
                       install_mask if mask_schedule is not None else None)
        resumed = step is not None
        step = start_step if step is None else step
        books.begin(step, resumed, model, optimizer)
        forward = model
        if group is not None:  # every rank continues from the leader's (possibly resumed) state
            step = group.sync_state(model, optimizer, step)
            forward = group.wrap(model)
        procedure.start(step, total, forward)

        def update(loss: torch.Tensor) -> None:
            optimizer.zero_grad(set_to_none=procedure.grads_to_none)
            loss.backward()
            masked_optimizer_step(optimizer, masked_pairs, all_parameters, config.clip_grad_norm)

        settled = getattr(mask_schedule, "settled_step", 0) if mask_schedule is not None else 0

        def observe(train_loss: float) -> dict:
            procedure.record.candidate = step >= settled
            if group is not None:  # the global batch's loss, and a cheap check that the ranks still agree
                train_loss = group.mean(train_loss)
                group.check_identical(model, masks, step)
                if not group.is_leader:
                    return {}
            return procedure.observe(step, train_loss)

        def save() -> None:
            parts, metadata = procedure.checkpoint_state()
            if mask_schedule is not None:  # the mask in force, for an exact resume
                parts = {**parts, "mask": {name: mask.bool() for name, mask in masks.items()}}
            save_checkpoint_parts(books.checkpoint_path,
                                  {"model": model.state_dict(), "optim": optimizer_tensors(optimizer), **parts},
                                  {"step": str(step), **metadata})

        masks_in_force = {name: mask for name, (_, mask) in zip(masks, masked_pairs)}  # updated in place
        sparse_layers = sparse_layer_names(model, masks_in_force, config.kernels, config.batch_size, job_dir)
        with sparse_linear_layers(model, masks_in_force, sparse_layers) as sparse:
            while step < total:
                if mask_schedule is not None:
                    with sparse.dense():  # a schedule may score with dense gradients (RigL's regrowth)
                        changed = mask_schedule(step, model, dict(masks))
                    if changed is not None:
                        install_mask(changed)
                for param_group in optimizer.param_groups:
                    param_group["lr"] = learning_rate_at(step, config, total, steps_per_epoch)
                loss = procedure.train_step(step, update)
                step += 1
                books.after_step(step, loss, model, optimizer, observe=observe, save=save)
    finally:
        procedure.close()
    if group is not None and not group.is_leader:
        return None
    last_row = procedure.record.last_row
    if last_row is None or last_row["step"] != step:  # no training happened (start == total): evaluate once
        procedure.record.candidate = True
        procedure.observe(step, float("nan"))
    result = procedure.result(step)
    books.finish()
    return result


def _mask_installer(masks: dict[str, torch.Tensor], masked_pairs: list, optimizer):
    """install(new_mask): make `new_mask` the mask in force (`MaskSchedule` says what that sets)."""

    @torch.no_grad()
    def install(new_mask: dict[str, torch.Tensor]) -> None:
        check_schedule_answer(new_mask, masks)
        for (parameter, in_force), name in zip(masked_pairs, list(masks)):  # prepare_masked_training's order
            in_force.copy_(new_mask[name])
            parameter.mul_(in_force)
            for value in optimizer.state.get(parameter, {}).values():
                if torch.is_tensor(value) and value.shape == parameter.shape:
                    value.mul_(in_force)
            masks[name] = in_force.to(masks[name].device, copy=True)

    return install


def _resume(path: Path | None, device, model: nn.Module, optimizer, procedure: Procedure,
            install_mask=None) -> int | None:
    """The step of the job's checkpoint, with the model, optimizer and task state (and, with `install_mask`, the
    mask in force) restored from it; None when there is none, or it is damaged or incomplete (set aside with a
    one-line warning, nothing restored)."""
    checkpoint = read_checkpoint_parts(path, device, procedure.checkpoint_json_keys) if path else None
    if checkpoint is None:
        return None
    parts, metadata = checkpoint
    missing = "model weights" if "model" not in parts else None
    if missing is None and install_mask is not None and "mask" not in parts:
        missing = "mask"
    missing = missing or procedure.restore(parts, metadata)
    if missing is not None:
        set_aside(path, f"checkpoint {path} lacks its {missing}; the job restarts from its start")
        return None
    model.load_state_dict(parts["model"])
    load_optimizer_tensors(optimizer, parts.get("optim", {}))
    if install_mask is not None:
        install_mask(parts["mask"])
    return metadata["step"]


def json_metadata(**records) -> dict[str, str]:
    """Checkpoint metadata strings of JSON records (see `Procedure.checkpoint_json_keys`)."""
    return {name: json.dumps(value) for name, value in records.items()}
