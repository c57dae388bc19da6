"""Training a translator with exact masks, label smoothing, early-stopping bookkeeping and exact resume.

The contract is `ticketlab.training.loop.train_model`'s. A step is one token-count batch (`batches`); the loss
is label-smoothed cross-entropy per target token (`train.label_smoothing`). Validation loss is measured every
`train.eval_every`; the weights at its minimum are kept (in memory and in the checkpoint), and test BLEU is
decoded only where a reported number needs it: for those weights (early_stop_test_metric) and for the final
ones (final_test_metric), once where they are the same weights, with beam width `train.beam_size`; a caller
that follows progress (`on_progress`) also gets a bar over the decoded sentences on a terminal. Resume: a
checkpoint holds the weights, the optimizer state, the step, the early-stop record and the best weights; batch
order and dropout masks are pure functions of (data_seed, step), so a resumed run repeats the uninterrupted one
bit for bit.
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
from ticketlab.tasks.translation.batches import batch_at, steps_per_epoch, token_batches, trim
from ticketlab.tasks.translation.evaluate import decoding_progress, split_bleu, split_loss
from ticketlab.tasks.translation.tokenizer import PAD_ID
from ticketlab.training.loop import (
    StepBookkeeping,
    TrainingInterrupted,
    masked_optimizer_step,
    prepare_masked_training,
    read_checkpoint_parts,
    save_checkpoint_parts,
)
from ticketlab.training.optim import learning_rate_at, load_optimizer_tensors, optimizer_tensors

__all__ = ["TranslationTrainResult", "TrainingInterrupted", "train_translation_model"]


@dataclass(frozen=True)
class TranslationTrainResult:
    """What one run reports. Losses are nats per target token; metrics are test BLEU (sacrebleu)."""

    early_stop_iteration: int
    early_stop_val_loss: float
    early_stop_test_loss: float
    early_stop_test_metric: float
    final_iteration: int
    final_val_loss: float
    final_test_loss: float
    final_test_metric: float
    final_train_loss: float
    beam_size: int
    bleu_signature: str

    def to_dict(self) -> dict:
        return asdict(self)


def train_translation_model(
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
    augment: Callable | None = None,
) -> TranslationTrainResult:
    """Train `model` in place on `data` (TranslationData) from `start_step` to `total_steps` (default:
    config.steps); the keyword arguments mean what they mean for `ticketlab.training.loop.train_model`."""
    per_epoch = steps_per_epoch(data, config)
    total = parse_step(config.steps, per_epoch) if total_steps is None else total_steps
    eval_every = parse_step(config.eval_every, per_epoch)
    device = data.train.source.device
    batches = token_batches(data.train.source, data.train.target, config.batch_size)
    optimizer, masked_pairs, all_parameters = prepare_masked_training(model, masks, config, optimizer_state, device)
    has_dropout = set_noise_seed(model, None) and any(getattr(module, "p", 0.0) > 0 for module in model.modules())

    step, record = start_step, EarlyStop()
    books = StepBookkeeping(start_step=start_step, total=total, eval_every=eval_every, job_dir=job_dir,
                            snapshot_steps=snapshot_steps, on_snapshot=on_snapshot, on_progress=on_progress,
                            checkpoint_interval_s=checkpoint_interval_s, stop_after_step=stop_after_step,
                            device=device)
    checkpoint = (read_checkpoint_parts(books.checkpoint_path, device, ("early_stop",))
                  if books.checkpoint_path else None)
    if checkpoint is not None:
        step = _load_checkpoint(checkpoint, model, optimizer, record)
    books.begin(step, checkpoint is not None, model, optimizer)

    while step < total:
        for group in optimizer.param_groups:
            group["lr"] = learning_rate_at(step, config, total, per_epoch)
        rows = batch_at(batches, step, data_seed).to(device)
        source, target = trim(data.train.source[rows]), trim(data.train.target[rows])
        if has_dropout:
            set_noise_seed(model, derive_seed(data_seed, "dropout", step))
        logits = model(source, target[:, :-1])
        loss = F.cross_entropy(logits.flatten(0, 1), target[:, 1:].flatten(), ignore_index=PAD_ID,
                               label_smoothing=config.label_smoothing)
        optimizer.zero_grad(set_to_none=False)
        loss.backward()
        masked_optimizer_step(optimizer, masked_pairs, all_parameters, config.clip_grad_norm)
        step += 1
        books.after_step(step, loss, model, optimizer,
                         observe=lambda train_loss: record.observe(step, model, data, train_loss),
                         save=lambda: _save_checkpoint(books.checkpoint_path, model, optimizer, step, record))

    if record.last_row is None or record.last_row["step"] != step:  # no training happened (start == total)
        record.observe(step, model, data, float("nan"))
    final_test_loss = split_loss(model, data, "test")
    final_bleu, signature = _test_bleu(model, data, config.beam_size, "final weights", on_progress is not None)
    train_loss = record.last_row["train_loss"]  # label-smoothed, the mean over the last evaluation interval
    if record.best_step == step:  # the early-stopping weights are the final ones: the same numbers
        early_test_loss, early_bleu = final_test_loss, final_bleu
    else:
        final_state = {name: value.clone() for name, value in model.state_dict().items()}
        model.load_state_dict(record.best_state)  # the early-stopping weights, for their test numbers
        early_test_loss = split_loss(model, data, "test")
        early_bleu = _test_bleu(model, data, config.beam_size, f"early-stop weights (it {record.best_step})",
                                on_progress is not None)[0]
        model.load_state_dict(final_state)
    result = TranslationTrainResult(
        early_stop_iteration=record.best_step,
        early_stop_val_loss=record.best_val_loss,
        early_stop_test_loss=early_test_loss,
        early_stop_test_metric=early_bleu,
        final_iteration=step,
        final_val_loss=record.last_row["val_loss"],
        final_test_loss=final_test_loss,
        final_test_metric=final_bleu,
        final_train_loss=train_loss,
        beam_size=config.beam_size,
        bleu_signature=signature,
    )
    books.finish()
    return result


def _test_bleu(model: nn.Module, data, beam: int, weights: str, show_progress: bool) -> tuple[float, str]:
    """(test BLEU, sacrebleu signature), with a progress bar over the decoded sentences where the caller shows
    progress: decoding takes longer than the training steps of a short job, and the job's bar stands at 100%."""
    if not show_progress:
        return split_bleu(model, data, "test", beam)[:2]
    with decoding_progress(len(data.test), f"BLEU: decoding test, {weights}") as update:
        return split_bleu(model, data, "test", beam, on_progress=update)[:2]


class EarlyStop:
    """The minimum validation loss, its step, and a copy of the weights there."""

    def __init__(self) -> None:
        self.best_step, self.best_val_loss = -1, float("inf")
        self.best_state: dict[str, torch.Tensor] = {}
        self.last_row: dict | None = None

    def observe(self, step: int, model: nn.Module, data, train_loss: float) -> dict:
        val_loss = split_loss(model, data, "val")
        row = {"step": step, "train_loss": train_loss, "val_loss": val_loss}
        if val_loss < self.best_val_loss or not self.best_state:
            self.best_step, self.best_val_loss = step, val_loss
            self.best_state = {name: value.detach().clone() for name, value in model.state_dict().items()}
        self.last_row = row
        return row


def _save_checkpoint(path: Path, model: nn.Module, optimizer, step: int, record: EarlyStop) -> None:
    state = {"best_step": record.best_step, "best_val_loss": record.best_val_loss, "last_row": record.last_row}
    save_checkpoint_parts(path, {"model": model.state_dict(), "optim": optimizer_tensors(optimizer),
                                 "best": record.best_state}, {"step": str(step), "early_stop": json.dumps(state)})


def _load_checkpoint(checkpoint, model: nn.Module, optimizer, record: EarlyStop) -> int:
    parts, metadata = checkpoint
    model.load_state_dict(parts["model"])
    load_optimizer_tensors(optimizer, parts.get("optim", {}))
    state = metadata["early_stop"]
    record.best_step, record.best_val_loss, record.last_row = state["best_step"], state["best_val_loss"], state["last_row"]
    record.best_state = parts["best"]
    return metadata["step"]
