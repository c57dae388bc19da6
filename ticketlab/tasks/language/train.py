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

from typing import Callable, Unpack

import torch
from torch import nn
from torch.nn import functional as F

from ticketlab.config import TrainConfig
from ticketlab.models import set_noise_seed
from ticketlab.seeds import derive_seed
from ticketlab.tasks.language.evaluate import EVAL_STREAMS, check_vocabulary, evaluate, metric_name
from ticketlab.tasks.language.streams import batchify, steps_per_epoch, training_segment
from ticketlab.training.bookkeeping import TrainingInterrupted
from ticketlab.training.early_stop import EarlyStop, TrainResult, record_result
from ticketlab.training.engine import RunOptions, json_metadata, train_masked

__all__ = ["LanguageTrainResult", "TrainingInterrupted", "train_language_model"]

LanguageTrainResult = TrainResult  # the one result class; details: early_stop_test_loss, final_test_loss, final_train_loss


def train_language_model(model: nn.Module, data, config: TrainConfig, *, masks: dict[str, torch.Tensor],
                         data_seed: int, augment: Callable[[torch.Tensor, int], torch.Tensor] | None = None,
                         **run: Unpack[RunOptions]) -> TrainResult:
    """Train `model` in place on `data` (TokenSplits) from `start_step` to `total_steps` (default: config.steps).

    A step is one segment of `data.sequence_length` tokens from each of `config.batch_size` streams; the loss is
    the mean cross-entropy per token, clipped by global gradient norm `config.clip_grad_norm` when set. Losses are
    nats per token; the metric is perplexity (words) or bits per character. The keyword arguments mean what they
    mean for `ticketlab.training.loop.train_model`; `augment(inputs, seed)`, if given, transforms each
    [time, batch] input segment.
    """
    check_vocabulary(model, data)
    procedure = _LanguageModelling(model, data, config, data_seed, augment)
    return train_masked(model, config, procedure, steps_per_epoch=procedure.per_epoch, device=data.train.device,
                        masks=masks, **run)


class _LanguageModelling:
    """Truncated BPTT for `train_masked`: segments, the hidden state carried between them (and in checkpoints),
    and the test numbers at the validation minimum (`record.best["test"]`)."""

    checkpoint_json_keys = ("early_stop", "hidden_layers")
    grads_to_none = False
    checkpoint_on_stop = False

    def __init__(self, model: nn.Module, data, config: TrainConfig, data_seed: int, augment) -> None:
        self.model, self.data, self.config, self.data_seed, self.augment = model, data, config, data_seed, augment
        self.per_epoch = steps_per_epoch(data, config)
        self.stream = batchify(data.train, config.batch_size)
        self.has_dropout = set_noise_seed(model, None) and any(
            getattr(module, "p", 0.0) > 0 for module in model.modules())
        self.metric = metric_name(data.level)
        self.record = EarlyStop({"test": {"loss": float("nan"), self.metric: float("nan")}})
        self.hidden = None

    def restore(self, parts: dict, metadata: dict) -> str | None:
        layers, hidden_states = metadata["hidden_layers"], parts.get("hidden", {})
        if any(f"{layer}.{part}" not in hidden_states for layer in range(layers) for part in "hc"):
            return "hidden state"
        self.record.load(metadata["early_stop"])
        self.hidden = [(hidden_states[f"{layer}.h"], hidden_states[f"{layer}.c"]) for layer in range(layers)] or None
        return None

    def start(self, step: int, total: int, forward: nn.Module) -> None:
        pass

    def train_step(self, step: int, update) -> torch.Tensor:
        inputs, targets, starts_epoch = training_segment(self.stream, step, self.per_epoch, self.data.sequence_length,
                                                         self.data_seed)
        if starts_epoch:
            self.hidden = None
        if self.augment is not None:
            inputs = self.augment(inputs, derive_seed(self.data_seed, "augment", step))
        if self.has_dropout:
            set_noise_seed(self.model, derive_seed(self.data_seed, "dropout", step))
        logits, hidden = self.model(inputs, self.hidden)
        self.hidden = [(h.detach(), c.detach()) for h, c in hidden]
        loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
        update(loss)
        return loss

    def observe(self, step: int, train_loss: float) -> dict:
        """The metrics row: step, train/val loss, val metric, and the test numbers at new minima."""
        val = evaluate(self.model, self.data, "val")
        row = {"step": step, "train_loss": train_loss, "val_loss": val["loss"],
               f"val_{self.metric}": val[self.metric]}
        if self.record.improves(val["loss"]):
            test = evaluate(self.model, self.data, "test")
            row.update({"test_loss": test["loss"], f"test_{self.metric}": test[self.metric]})
        return self.record.observe(row, val["loss"], lambda: {"test": test})

    def checkpoint_state(self) -> tuple[dict, dict]:
        hidden = self.hidden or ()
        states = {f"{layer}.{part}": value for layer, (h, c) in enumerate(hidden)
                  for part, value in (("h", h), ("c", c))}
        return {"hidden": states}, {**json_metadata(early_stop=self.record.state()), "hidden_layers": str(len(hidden))}

    def close(self) -> None:
        pass

    def result(self, step: int) -> TrainResult:
        record, model, data, metric = self.record, self.model, self.data, self.metric
        last = record.last_row
        if "test_loss" in last:
            final_test = {"loss": last["test_loss"], metric: last[f"test_{metric}"]}
        else:
            final_test = evaluate(model, data, "test")
        train_streams = max(self.config.batch_size, EVAL_STREAMS[data.level])  # a long split: wide and short is faster
        train_loss = evaluate(model, data, "train", streams=train_streams)["loss"]
        return record_result(record, step, metric, final_test, final_train_loss=train_loss)
