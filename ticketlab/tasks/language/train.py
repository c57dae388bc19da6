"""Truncated-BPTT training of a language model with exact masks, early-stopping bookkeeping and exact resume.

The contract is `ticketlab.training.loop.train_model`'s. Exactness: pruned weights are zero at the start, their
gradients are zeroed before clipping and every optimizer step, and the weights are re-masked after it (a tied
embedding/decoder matrix is one Parameter with one mask). Resume: a checkpoint holds the weights, the optimizer
state, the step, the early-stop record and the hidden state carried into the next segment; segment order,
dropout masks and learning rate are pure functions of (data_seed, step), so a resumed run repeats the
uninterrupted one bit for bit. The hidden state starts at zero at every epoch (each epoch has its own offset)
and at `start_step` when no checkpoint is resumed (e.g. a rewound run starting mid-epoch).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F

from ticketlab.config import TrainConfig, parse_step
from ticketlab.models import set_noise_seed
from ticketlab.seeds import derive_seed
from ticketlab.store import set_aside
from ticketlab.tasks.language.evaluate import EVAL_STREAMS, check_vocabulary, evaluate, metric_name
from ticketlab.training.loop import (
    StepBookkeeping,
    TrainingInterrupted,
    masked_optimizer_step,
    prepare_masked_training,
    read_checkpoint_parts,
    save_checkpoint_parts,
)
from ticketlab.training.optim import learning_rate_at, load_optimizer_tensors, optimizer_tensors
from ticketlab.tasks.language.streams import batchify, steps_per_epoch, training_segment

__all__ = ["LanguageTrainResult", "TrainingInterrupted", "train_language_model"]


@dataclass(frozen=True)
class LanguageTrainResult:
    """What one run reports. Losses are nats per token; metrics are perplexity (words) or bits per character."""

    early_stop_iteration: int
    early_stop_val_loss: float
    early_stop_test_loss: float
    early_stop_test_metric: float
    final_iteration: int
    final_val_loss: float
    final_test_loss: float
    final_test_metric: float
    final_train_loss: float

    def to_dict(self) -> dict:
        return asdict(self)


def train_language_model(
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
) -> LanguageTrainResult:
    """Train `model` in place on `data` (TokenSplits) from `start_step` to `total_steps` (default: config.steps).

    A step is one segment of `data.sequence_length` tokens from each of `config.batch_size` streams; the loss is
    the mean cross-entropy per token, clipped by global gradient norm `config.clip_grad_norm` when set. The
    keyword arguments mean what they mean for `ticketlab.training.loop.train_model`; `augment(inputs, seed)`, if
    given, transforms each [time, batch] input segment.
    """
    per_epoch = steps_per_epoch(data, config)
    total = parse_step(config.steps, per_epoch) if total_steps is None else total_steps
    eval_every = parse_step(config.eval_every, per_epoch)
    device = data.train.device
    check_vocabulary(model, data)
    stream = batchify(data.train, config.batch_size)
    optimizer, masked_pairs, all_parameters = prepare_masked_training(model, masks, config, optimizer_state, device)
    has_dropout = set_noise_seed(model, None) and any(
        getattr(module, "p", 0.0) > 0 for module in model.modules())

    step, record, hidden = start_step, LanguageEarlyStop(metric_name(data.level)), None
    books = StepBookkeeping(start_step=start_step, total=total, eval_every=eval_every, job_dir=job_dir,
                            snapshot_steps=snapshot_steps, on_snapshot=on_snapshot, on_progress=on_progress,
                            checkpoint_interval_s=checkpoint_interval_s, stop_after_step=stop_after_step,
                            device=device)
    checkpoint = _read_checkpoint(books.checkpoint_path, device) if books.checkpoint_path else None
    if checkpoint is not None:
        step, record, hidden = _load_checkpoint(checkpoint, model, optimizer, record)
    books.begin(step, checkpoint is not None, model, optimizer)

    while step < total:
        for group in optimizer.param_groups:
            group["lr"] = learning_rate_at(step, config, total, per_epoch)
        inputs, targets, starts_epoch = training_segment(stream, step, per_epoch, data.sequence_length, data_seed)
        if starts_epoch:
            hidden = None
        if augment is not None:
            inputs = augment(inputs, derive_seed(data_seed, "augment", step))
        if has_dropout:
            set_noise_seed(model, derive_seed(data_seed, "dropout", step))
        logits, hidden = model(inputs, hidden)
        hidden = [(h.detach(), c.detach()) for h, c in hidden]
        loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
        optimizer.zero_grad(set_to_none=False)
        loss.backward()
        masked_optimizer_step(optimizer, masked_pairs, all_parameters, config.clip_grad_norm)
        step += 1
        books.after_step(
            step, loss, model, optimizer,
            observe=lambda train_loss: record.observe(step, model, data, train_loss),
            save=lambda: _save_checkpoint(books.checkpoint_path, model, optimizer, step, record, hidden))

    if record.last_row is None or record.last_row["step"] != step:  # no training happened (start == total)
        record.observe(step, model, data, float("nan"))
    last = record.last_row
    if "test_loss" in last:
        final_test = {"loss": last["test_loss"], record.metric: last[f"test_{record.metric}"]}
    else:
        final_test = evaluate(model, data, "test")
    train_streams = max(config.batch_size, EVAL_STREAMS[data.level])  # a long split: wide and short is faster
    train_loss = evaluate(model, data, "train", streams=train_streams)["loss"]
    result = LanguageTrainResult(
        early_stop_iteration=record.best_step,
        early_stop_val_loss=record.best_val_loss,
        early_stop_test_loss=record.best_test["loss"],
        early_stop_test_metric=record.best_test[record.metric],
        final_iteration=step,
        final_val_loss=last["val_loss"],
        final_test_loss=final_test["loss"],
        final_test_metric=final_test[record.metric],
        final_train_loss=train_loss,
    )
    books.finish()
    return result


class LanguageEarlyStop:
    """The minimum validation loss and the test loss/metric there (the test split is evaluated only at minima)."""

    def __init__(self, metric: str) -> None:
        self.metric = metric
        self.best_step, self.best_val_loss = -1, float("inf")
        self.best_test: dict[str, float] = {"loss": float("nan"), metric: float("nan")}
        self.last_row: dict | None = None

    def observe(self, step: int, model: nn.Module, data, train_loss: float) -> dict:
        """Evaluate at `step` and return the metrics row: step, train/val loss, val metric, test at new minima."""
        val = evaluate(model, data, "val")
        row = {"step": step, "train_loss": train_loss, "val_loss": val["loss"],
               f"val_{self.metric}": val[self.metric]}
        if val["loss"] < self.best_val_loss:
            test = evaluate(model, data, "test")
            self.best_step, self.best_val_loss, self.best_test = step, val["loss"], test
            row.update({"test_loss": test["loss"], f"test_{self.metric}": test[self.metric]})
        self.last_row = row
        return row

    def state(self) -> dict:
        return {"best_step": self.best_step, "best_val_loss": self.best_val_loss, "best_test": self.best_test,
                "last_row": self.last_row}

    def load(self, state: dict) -> None:
        self.best_step, self.best_val_loss = state["best_step"], state["best_val_loss"]
        self.best_test, self.last_row = state["best_test"], state["last_row"]


def _save_checkpoint(path: Path, model: nn.Module, optimizer, step: int, record: LanguageEarlyStop, hidden) -> None:
    states = {f"{layer}.{part}": value for layer, (h, c) in enumerate(hidden or ()) for part, value in (("h", h), ("c", c))}
    metadata = {"step": str(step), "early_stop": json.dumps(record.state()), "hidden_layers": str(len(hidden or ()))}
    save_checkpoint_parts(path, {"model": model.state_dict(), "optim": optimizer_tensors(optimizer), "hidden": states},
                          metadata)


def _read_checkpoint(path: Path, device):
    """(tensors by group, metadata) of the job's checkpoint; None when there is none or it is damaged (set aside
    with a one-line warning; the job restarts from its start, as `train_model` does)."""
    checkpoint = read_checkpoint_parts(path, device, ("early_stop", "hidden_layers"))
    if checkpoint is None:
        return None
    parts, metadata = checkpoint
    layers = metadata["hidden_layers"]
    if any(f"{layer}.{part}" not in parts.get("hidden", {}) for layer in range(layers) for part in "hc"):
        set_aside(path, f"checkpoint {path} lacks its hidden state; the job restarts from its start")
        return None
    return checkpoint


def _load_checkpoint(checkpoint, model: nn.Module, optimizer, record: LanguageEarlyStop):
    parts, metadata = checkpoint
    model.load_state_dict(parts["model"])
    load_optimizer_tensors(optimizer, parts.get("optim", {}))
    record.load(metadata["early_stop"])
    hidden_states = parts.get("hidden", {})
    hidden = [(hidden_states[f"{layer}.h"], hidden_states[f"{layer}.c"]) for layer in range(metadata["hidden_layers"])]
    return metadata["step"], record, hidden or None
