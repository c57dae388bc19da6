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

from typing import Callable, Unpack

import torch
from torch import nn
from torch.nn import functional as F

from ticketlab.config import TrainConfig
from ticketlab.models import set_noise_seed
from ticketlab.seeds import derive_seed
from ticketlab.tasks.translation.batches import batch_at, steps_per_epoch, token_batches, trim
from ticketlab.tasks.translation.evaluate import decoding_progress, split_bleu, split_loss
from ticketlab.tasks.translation.tokenizer import PAD_ID
from ticketlab.training.bookkeeping import TrainingInterrupted
from ticketlab.training.early_stop import EarlyStop, TrainResult
from ticketlab.training.engine import RunOptions, json_metadata, train_masked

__all__ = ["TranslationTrainResult", "TrainingInterrupted", "train_translation_model"]

# the one result class; details: early_stop_test_loss, final_test_loss, final_train_loss, beam_size, bleu_signature
TranslationTrainResult = TrainResult


def train_translation_model(model: nn.Module, data, config: TrainConfig, *, masks: dict[str, torch.Tensor],
                            data_seed: int, augment: Callable | None = None,
                            **run: Unpack[RunOptions]) -> TrainResult:
    """Train `model` in place on `data` (TranslationData) from `start_step` to `total_steps` (default:
    config.steps); the keyword arguments mean what they mean for `ticketlab.training.loop.train_model` (`augment`
    is not used). Losses are nats per target token; the metric is test BLEU (sacrebleu)."""
    procedure = _Translation(model, data, config, data_seed, show_progress=run.get("on_progress") is not None)
    return train_masked(model, config, procedure, steps_per_epoch=steps_per_epoch(data, config),
                        device=data.train.source.device, masks=masks, **run)


class _Translation:
    """Token-count batches and label-smoothed loss for `train_masked`; the weights at the validation minimum are
    kept (in memory and in checkpoints, tensor group "best") for their test numbers at the end."""

    checkpoint_json_keys = ("early_stop",)
    grads_to_none = False
    checkpoint_on_stop = False

    def __init__(self, model: nn.Module, data, config: TrainConfig, data_seed: int, show_progress: bool) -> None:
        self.model, self.data, self.config, self.data_seed = model, data, config, data_seed
        self.show_progress = show_progress
        self.device = data.train.source.device
        self.batches = token_batches(data.train.source, data.train.target, config.batch_size)
        self.has_dropout = set_noise_seed(model, None) and any(
            getattr(module, "p", 0.0) > 0 for module in model.modules())
        self.record = EarlyStop(keep_first=True)
        self.best_state: dict[str, torch.Tensor] = {}

    def restore(self, parts: dict, metadata: dict) -> str | None:
        if "best" not in parts:
            return "early-stopping weights"
        self.record.load(metadata["early_stop"])
        self.best_state = parts["best"]
        return None

    def start(self, step: int, total: int, forward: nn.Module) -> None:
        pass

    def train_step(self, step: int, update) -> torch.Tensor:
        rows = batch_at(self.batches, step, self.data_seed).to(self.device)
        source, target = trim(self.data.train.source[rows]), trim(self.data.train.target[rows])
        if self.has_dropout:
            set_noise_seed(self.model, derive_seed(self.data_seed, "dropout", step))
        logits = self.model(source, target[:, :-1])
        loss = F.cross_entropy(logits.flatten(0, 1), target[:, 1:].flatten(), ignore_index=PAD_ID,
                               label_smoothing=self.config.label_smoothing)
        update(loss)
        return loss

    def observe(self, step: int, train_loss: float) -> dict:
        val_loss = split_loss(self.model, self.data, "val")
        if self.record.improves(val_loss):
            self.best_state = {name: value.detach().clone() for name, value in self.model.state_dict().items()}
        return self.record.observe({"step": step, "train_loss": train_loss, "val_loss": val_loss}, val_loss)

    def checkpoint_state(self) -> tuple[dict, dict]:
        return {"best": self.best_state}, json_metadata(early_stop=self.record.state())

    def close(self) -> None:
        pass

    def result(self, step: int) -> TrainResult:
        """Test BLEU is decoded only where a reported number needs it: for the early-stopping weights and for the
        final ones, once where they are the same weights."""
        record, model, data, beam = self.record, self.model, self.data, self.config.beam_size
        final_test_loss = split_loss(model, data, "test")
        final_bleu, signature = _test_bleu(model, data, beam, "final weights", self.show_progress)
        train_loss = record.last_row["train_loss"]  # label-smoothed, the mean over the last evaluation interval
        if record.best_step == step:  # the early-stopping weights are the final ones: the same numbers
            early_test_loss, early_bleu = final_test_loss, final_bleu
        else:
            final_state = {name: value.clone() for name, value in model.state_dict().items()}
            model.load_state_dict(self.best_state)  # the early-stopping weights, for their test numbers
            early_test_loss = split_loss(model, data, "test")
            early_bleu = _test_bleu(model, data, beam, f"early-stop weights (it {record.best_step})",
                                    self.show_progress)[0]
            model.load_state_dict(final_state)
        return TrainResult(
            early_stop_iteration=record.best_step,
            early_stop_val_loss=record.best_val_loss,
            early_stop_test_metric=early_bleu,
            final_iteration=step,
            final_val_loss=record.last_row["val_loss"],
            final_test_metric=final_bleu,
            details={"early_stop_test_loss": early_test_loss, "final_test_loss": final_test_loss,
                     "final_train_loss": train_loss, "beam_size": beam, "bleu_signature": signature},
        )


def _test_bleu(model: nn.Module, data, beam: int, weights: str, show_progress: bool) -> tuple[float, str]:
    """(test BLEU, sacrebleu signature), with a progress bar over the decoded sentences where the caller shows
    progress: decoding takes longer than the training steps of a short job, and the job's bar stands at 100%."""
    if not show_progress:
        return split_bleu(model, data, "test", beam)[:2]
    with decoding_progress(len(data.test), f"BLEU: decoding test, {weights}") as update:
        return split_bleu(model, data, "test", beam, on_progress=update)[:2]
