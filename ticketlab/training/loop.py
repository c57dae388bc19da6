"""Training a classifier: `train_model`, the engine's loop (`engine.train_masked`) with a classifier's batches,
cross-entropy loss and evaluation; and the classifier's early-stop record and checkpoint, which the stacked
populations share (`population`).

Exactness: pruned weights are zero at the start, their gradients are zeroed before every optimizer step
(so momentum/Adam state and weight decay never move them) and the weights are re-masked after the step.
Resume: a checkpoint holds the weights, the optimizer state, the step and the early-stop record; the data
order and learning rate are pure functions of the step, so a resumed run repeats the uninterrupted one.

The names other layers import from here (checkpoint files, metrics, batches, evaluation, the masked step) live
in the modules of one job each and stay importable from this one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F

from ticketlab.config import TrainConfig
from ticketlab.errors import IntegrityError
from ticketlab.seeds import derive_seed
from ticketlab.store import load_tensors_and_metadata, set_aside
from ticketlab.training.batches import (
    batch_indices,
    data_device,
    epoch_order,
    first_inputs,
    held_in_memory,
    iterations_per_epoch,
    num_train_examples,
    training_batches,
)
from ticketlab.training.bookkeeping import (
    CHECKPOINT_FILE,
    METRICS_FILE,
    StepBookkeeping,
    TrainingInterrupted,
    reset_metrics,
)
from ticketlab.training.checkpoint import read_checkpoint_parts, save_checkpoint_parts
from ticketlab.training.distributed import DataParallelGroup
from ticketlab.training.early_stop import EarlyStop, TrainResult
from ticketlab.training.engine import json_metadata, train_masked
from ticketlab.training.evaluation import (
    EVAL_BATCH,
    EVAL_INPUT_FLOATS,
    eval_batch_size,
    evaluate,
    evaluate_batches,
    evaluate_split,
)
from ticketlab.training.masked_step import (
    apply_masks,
    masked_optimizer_step,
    prepare_masked_training,
)

__all__ = [  # this module's own names, then those other layers import from here (their modules say what they do)
    "EarlyStopRecord", "TrainResult", "read_checkpoint", "read_checkpoint_or_set_aside", "train_model",
    "write_checkpoint",
    "batch_indices", "data_device", "epoch_order", "first_inputs", "held_in_memory", "iterations_per_epoch",
    "num_train_examples", "training_batches",
    "CHECKPOINT_FILE", "METRICS_FILE", "StepBookkeeping", "TrainingInterrupted", "reset_metrics",
    "read_checkpoint_parts", "save_checkpoint_parts",
    "EVAL_BATCH", "EVAL_INPUT_FLOATS", "eval_batch_size", "evaluate", "evaluate_batches", "evaluate_split",
    "apply_masks", "masked_optimizer_step", "prepare_masked_training",
]


def train_model(
    model: nn.Module,
    data,
    config: TrainConfig,
    *,
    masks: dict[str, torch.Tensor],
    data_seed: int,
    start_step: int = 0,
    total_steps: int | None = None,
    optimizer_state: dict[str, torch.Tensor] | None = None,
    job_dir: Path | None = None,
    snapshot_steps: tuple[int, ...] = (),
    on_snapshot: Callable[[int, nn.Module, torch.optim.Optimizer], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
    checkpoint_interval_s: float = 30.0,
    stop_after_step: int | None = None,
    augment: Callable[[torch.Tensor, int], torch.Tensor] | None = None,
    mask_schedule: Callable | None = None,
    group: DataParallelGroup | None = None,
) -> TrainResult | None:
    """Train `model` in place from `start_step` to `total_steps` (default: config.steps) under `masks`.

    `data` is in-memory tensor splits (x_train, y_train, ...), or streamed data such as
    `ticketlab.data.image_folder.FolderData` (batches decoded by worker processes; see `training_batches` and
    `evaluate_split`).

    With `job_dir`, metrics go to metrics.jsonl and a checkpoint is written at evaluation points at most every
    `checkpoint_interval_s` seconds; a later call with the same arguments resumes from it. `snapshot_steps`
    call `on_snapshot(step, model, optimizer)` when the model has taken exactly that many steps (used to
    save rewind points). `on_progress(n)` reports n more steps done. `augment(batch, seed)` transforms each
    training batch on its device; its seed is derived from (data_seed, step) so resumed runs repeat it.
    `mask_schedule` changes the mask during training (`ticketlab.training.engine.MaskSchedule`).
    Every trainer of every task takes these keywords (`tasks.base.Task.train`).

    With a data-parallel `group` (torchrun), every rank calls this with the same arguments except that only the
    leader (rank 0) passes `job_dir` and the callbacks: each rank trains on its shard of every global batch under
    DistributedDataParallel, the leader evaluates, logs and checkpoints, and followers return None.
    """
    procedure = _Classifier(model, data, config, data_seed, augment, group)
    return train_masked(model, config, procedure, steps_per_epoch=procedure.per_epoch, device=data_device(data),
                        masks=masks, start_step=start_step, total_steps=total_steps, optimizer_state=optimizer_state,
                        job_dir=job_dir, snapshot_steps=snapshot_steps, on_snapshot=on_snapshot,
                        on_progress=on_progress, checkpoint_interval_s=checkpoint_interval_s,
                        stop_after_step=stop_after_step, mask_schedule=mask_schedule, group=group)


class _Classifier:
    """A classifier's part of `train_masked`: batches of (inputs, labels), cross-entropy, loss and accuracy."""

    checkpoint_json_keys = ("early_stop",)
    grads_to_none = True  # backward writes fresh gradients instead of adding them to zeros
    checkpoint_on_stop = False

    def __init__(self, model: nn.Module, data, config: TrainConfig, data_seed: int, augment, group) -> None:
        self.model, self.data, self.config, self.data_seed, self.augment, self.group = (
            model, data, config, data_seed, augment, group)
        self.per_epoch = iterations_per_epoch(num_train_examples(data), config.batch_size)
        self.record = EarlyStopRecord()
        self.batches = None
        # streamed data decodes only this rank's shard; in-memory batches are indexed whole and sliced below
        self.loader_shard = (group.rank, group.world_size) if group is not None and not held_in_memory(data) else None

    def restore(self, parts: dict, metadata: dict) -> str | None:
        self.record.load(metadata["early_stop"])
        return None

    def start(self, step: int, total: int, forward: nn.Module) -> None:
        self.forward = forward
        self.batches = training_batches(self.data, step, total, self.config.batch_size, self.data_seed,
                                        shard=self.loader_shard)

    def train_step(self, step: int, update) -> torch.Tensor:
        inputs, labels = next(self.batches)
        if self.augment is not None:  # the whole global batch, so each shard gets what one process gives it
            inputs = self.augment(inputs, derive_seed(self.data_seed, "augment", step))
        if self.group is not None and self.loader_shard is None:
            inputs, labels = self.group.shard(inputs), self.group.shard(labels)
        loss = F.cross_entropy(self.forward(inputs), labels)
        update(loss)
        return loss

    def observe(self, step: int, train_loss: float) -> dict:
        return self.record.observe(step, self.model, self.data, train_loss)

    def checkpoint_state(self) -> tuple[dict, dict]:
        return {}, json_metadata(early_stop=self.record.state())

    def close(self) -> None:
        if self.batches is not None:
            self.batches.close()  # stops streamed data's decoding workers

    def result(self, step: int) -> TrainResult:
        record, model, data = self.record, self.model, self.data
        final_val_loss = record.last_row["val_loss"]
        final_test_accuracy = record.last_row.get("test_accuracy")
        if final_test_accuracy is None:
            _, final_test_accuracy = evaluate_split(model, data, "test")
        train_loss, train_accuracy = evaluate_split(model, data, "train")
        return record.result(step, final_val_loss, final_test_accuracy, train_loss, train_accuracy)


class EarlyStopRecord(EarlyStop):
    """A classifier's early stopping: the minimum validation loss, the validation accuracy and the test accuracy
    there (test is evaluated only when needed)."""

    def __init__(self) -> None:
        super().__init__({"val_accuracy": 0.0, "test_accuracy": 0.0})

    @property
    def best_val_accuracy(self) -> float:
        return self.best["val_accuracy"]

    @property
    def best_test_accuracy(self) -> float | None:
        return self.best["test_accuracy"]

    @best_test_accuracy.setter
    def best_test_accuracy(self, accuracy: float) -> None:
        self.best["test_accuracy"] = accuracy

    def state(self) -> dict:
        """The checkpoint's record without the last row, as classifiers' checkpoints always held it (a resumed
        classifier evaluates again before it reports)."""
        return {name: value for name, value in super().state().items() if name != "last_row"}

    def observe(self, step: int, model: nn.Module, data, train_loss: float) -> dict:
        val_loss, val_accuracy = evaluate_split(model, data, "val")
        test_accuracy = None
        if self.improves(val_loss):
            _, test_accuracy = evaluate_split(model, data, "test")
        return self.record(step, train_loss, val_loss, val_accuracy, test_accuracy)

    def record(
        self, step: int, train_loss: float, val_loss: float, val_accuracy: float, test_accuracy: float | None
    ) -> dict:
        """Log one evaluation and return its metrics row. At a new minimum (`improves(val_loss)`), a
        `test_accuracy` of None leaves the minimum's test accuracy pending: `best_test_accuracy` is None until
        the caller sets it, and the row has no test_accuracy."""
        row = {"step": step, "train_loss": train_loss, "val_loss": val_loss, "val_accuracy": val_accuracy}
        if self.improves(val_loss) and test_accuracy is not None:
            row["test_accuracy"] = test_accuracy
        return super().observe(row, val_loss, lambda: {"val_accuracy": val_accuracy, "test_accuracy": test_accuracy})

    def result(
        self, final_step: int, final_val_loss: float, final_test_accuracy: float, train_loss: float,
        train_accuracy: float,
    ) -> TrainResult:
        """The run's result; the primary metric of a classifier is its test accuracy (a fraction)."""
        return TrainResult(
            early_stop_iteration=self.best_step,
            early_stop_val_loss=self.best_val_loss,
            early_stop_test_metric=self.best_test_accuracy,
            final_iteration=final_step,
            final_val_loss=final_val_loss,
            final_test_metric=final_test_accuracy,
            details={"early_stop_val_accuracy": self.best_val_accuracy,
                     "early_stop_test_accuracy": self.best_test_accuracy,
                     "final_test_accuracy": final_test_accuracy, "final_train_accuracy": train_accuracy,
                     "final_train_loss": train_loss},
        )


def write_checkpoint(
    path: Path, model_state: dict[str, torch.Tensor], optimizer_state: dict[str, torch.Tensor], step: int,
    record: EarlyStopRecord, mask: dict[str, torch.Tensor] | None = None,
) -> None:
    """Save a classifier's resumable point in the engine's format: weights (state_dict names), flat optimizer
    tensors, the step and the early-stop record (the stacked populations write each member's with it), and the
    mask in force of a job whose mask changes while it trains."""
    parts = {"model": model_state, "optim": optimizer_state} | ({} if mask is None else {"mask": mask})
    save_checkpoint_parts(path, parts, {"step": str(step), **json_metadata(early_stop=record.state())})


def read_checkpoint(
    path: Path, device
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], int, EarlyStopRecord, dict[str, torch.Tensor]]:
    """Inverse of write_checkpoint: (model state, flat optimizer tensors, step, early-stop record, mask in force:
    {} when none was saved).

    IntegrityError if the file does not parse or its tensors differ from the sha256 in its metadata."""
    tensors, metadata = load_tensors_and_metadata(path, device=device)
    model_state = {name[6:]: value for name, value in tensors.items() if name.startswith("model.")}
    optimizer_state = {name[6:]: value for name, value in tensors.items() if name.startswith("optim.")}
    mask = {name[5:]: value for name, value in tensors.items() if name.startswith("mask.")}
    record = EarlyStopRecord()
    try:
        record.load(json.loads(metadata["early_stop"]))
        step = int(metadata["step"])
    except (KeyError, TypeError, ValueError) as error:
        raise IntegrityError(f"{path}: checkpoint metadata is incomplete ({error!r})") from None
    return model_state, optimizer_state, step, record, mask


def read_checkpoint_or_set_aside(path: Path, device, needs_mask: bool = False):
    """`read_checkpoint(path)`, or None when there is no checkpoint or it is damaged, or, with `needs_mask` (a job
    whose mask changes while it trains), lacks the mask in force; such a one is renamed to
    checkpoint.corrupt-<timestamp>.safetensors with a one-line warning, and the job restarts from its start."""
    if not path.exists():
        return None
    try:
        checkpoint = read_checkpoint(path, device)
    except IntegrityError as error:
        set_aside(path, f"{error}; the job restarts from its start")
        return None
    if needs_mask and not checkpoint[4]:  # the engine's rule (`engine._resume`)
        set_aside(path, f"checkpoint {path} lacks its mask; the job restarts from its start")
        return None
    return checkpoint
