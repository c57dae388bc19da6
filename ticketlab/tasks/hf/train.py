"""Fine-tuning a pre-trained transformer with exact masks and exact resume: the `Procedure` both Hugging Face tasks
give `ticketlab.training.engine.train_masked` (the contract of `ticketlab.training.loop.train_model`).

A step is one batch of `train.batch_size` examples (GLUE) or token blocks (MLM), drawn by
`ticketlab.training.batches.batch_indices` from (data seed, step); MLM's masking and the model's dropout are drawn
from seeds derived from (data seed, step) too, so a resumed run repeats the uninterrupted one bit for bit. The
loss is the model's own (`model(**batch, labels=...).loss`). Use train.optimizer adamw with train.weight_decay for
BERT's fine-tuning recipe: the engine zeroes pruned gradients before the step and re-masks after it, so decoupled
weight decay never moves a pruned weight off 0.
"""

from __future__ import annotations

from typing import Callable, Unpack

import torch
from torch import nn

from ticketlab.config import TrainConfig
from ticketlab.seeds import derive_seed
from ticketlab.tasks.hf.pretrained import seeded
from ticketlab.tasks.hf.text_data import mask_tokens
from ticketlab.training.batches import batch_indices, iterations_per_epoch
from ticketlab.training.early_stop import EarlyStop, TrainResult, record_result
from ticketlab.training.engine import RunOptions, json_metadata, train_masked

Batch = tuple[dict[str, torch.Tensor], torch.Tensor]


def glue_batch(data, step: int, batch_size: int, data_seed: int) -> Batch:
    """(features, labels) of GLUE training step `step`."""
    indices = batch_indices(step, len(data.train), batch_size, data_seed).to(data.train.labels.device)
    return data.train.rows(indices)


def mlm_batch(data, step: int, batch_size: int, data_seed: int) -> Batch:
    """(features, labels) of MLM training step `step`: its blocks, masked from (data seed, step)."""
    indices = batch_indices(step, len(data.train), batch_size, data_seed).to(data.train.device)
    inputs, labels = mask_tokens(data.train.index_select(0, indices), data, derive_seed(data_seed, "mlm_mask", step))
    return {"input_ids": inputs, "attention_mask": torch.ones_like(inputs)}, labels


def training_steps_per_epoch(data, config: TrainConfig) -> int:
    return iterations_per_epoch(len(data.train), config.batch_size)


def make_trainer(batch_at: Callable[..., Batch], evaluate: Callable[[nn.Module, object, str], dict],
                 metric_of: Callable[[object], str]):
    """The task's `train` function: `batch_at(data, step, batch_size, data_seed)`, `evaluate(model, data, split)`
    and the data's primary metric name."""

    def train(model: nn.Module, data, config: TrainConfig, *, masks: dict[str, torch.Tensor], data_seed: int,
              augment: Callable | None = None, **run: Unpack[RunOptions]) -> TrainResult:
        """Fine-tune `model` in place (see the module docstring); `augment` is not used."""
        procedure = FineTuning(model, data, config, data_seed, batch_at, evaluate, metric_of(data))
        return train_masked(model, config, procedure, steps_per_epoch=training_steps_per_epoch(data, config),
                            device=_data_device(data), masks=masks, **run)

    return train


def _data_device(data) -> torch.device:
    train = data.train
    return (train.labels if hasattr(train, "labels") else train).device


class FineTuning:
    """Batches and the model's loss for `train_masked`; the test numbers at the validation minimum are kept in the
    early-stop record (`record.best["test"]`)."""

    checkpoint_json_keys = ("early_stop",)
    grads_to_none = True
    checkpoint_on_stop = False

    def __init__(self, model, data, config: TrainConfig, data_seed: int, batch_at, evaluate, metric: str) -> None:
        self.model, self.data, self.config, self.data_seed = model, data, config, data_seed
        self.batch_at, self.evaluate, self.metric = batch_at, evaluate, metric
        self.device = _data_device(data)
        self.record = EarlyStop({"test": {"loss": float("nan"), metric: float("nan")}})
        self.forward: nn.Module = model

    def restore(self, parts: dict, metadata: dict) -> str | None:
        self.record.load(metadata["early_stop"])
        return None

    def start(self, step: int, total: int, forward: nn.Module) -> None:
        self.forward = forward

    def train_step(self, step: int, update) -> torch.Tensor:
        features, labels = self.batch_at(self.data, step, self.config.batch_size, self.data_seed)
        with seeded(derive_seed(self.data_seed, "dropout", step), self.device):
            loss = self.forward(**features, labels=labels).loss
        update(loss)
        return loss.detach()

    def observe(self, step: int, train_loss: float) -> dict:
        """The metrics row: step, train/val loss, val metric, and the test numbers at new minima."""
        val = self.evaluate(self.model, self.data, "val")
        row = {"step": step, "train_loss": train_loss, "val_loss": val["loss"],
               f"val_{self.metric}": val[self.metric]}
        test = None
        if self.record.improves(val["loss"]):
            test = self.evaluate(self.model, self.data, "test")
            row.update({f"test_{name}": value for name, value in test.items()})
        return self.record.observe(row, val["loss"], lambda: {"test": test})

    def checkpoint_state(self) -> tuple[dict, dict]:
        return {}, json_metadata(early_stop=self.record.state())

    def close(self) -> None:
        pass

    def result(self, step: int) -> TrainResult:
        record, metric = self.record, self.metric
        last = record.last_row
        if "test_loss" in last:
            final_test = {name[5:]: value for name, value in last.items() if name.startswith("test_")}
        else:
            final_test = self.evaluate(self.model, self.data, "test")
        return record_result(record, step, metric, final_test,
                                **{f"final_test_{name}": value for name, value in final_test.items()
                                   if name not in ("loss", metric)})
