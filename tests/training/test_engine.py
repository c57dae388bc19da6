"""The one masked training loop: a toy task supplies only its batches, loss and evaluation (one small class here),
and gets exact masks, metrics rows, early stopping, checkpoints and bit-exact resume from the engine."""

from __future__ import annotations

import pickle

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from ticketlab.config import TrainConfig
from ticketlab.seeds import derive_seed
from ticketlab.store import read_jsonl
from ticketlab.training.bookkeeping import CHECKPOINT_FILE, METRICS_FILE, TrainingInterrupted
from ticketlab.training.early_stop import EarlyStop, TrainResult
from ticketlab.training.engine import json_metadata, train_masked

CONFIG = TrainConfig(optimizer="adam", lr=0.05, batch_size=8, steps="12it", eval_every="3it")


class _Regression:
    """A toy task: least squares on seeded data; the batch of step k is drawn from (data_seed, k)."""

    checkpoint_json_keys = ("early_stop",)
    grads_to_none = True
    checkpoint_on_stop = False

    def __init__(self, model: nn.Module, data_seed: int, lacks: str | None = None) -> None:
        generator = torch.Generator().manual_seed(0)
        self.x, self.x_val = torch.randn(64, 4, generator=generator), torch.randn(16, 4, generator=generator)
        truth = torch.tensor([[1.0], [-2.0], [0.5], [3.0]])
        self.y, self.y_val = self.x @ truth, self.x_val @ truth
        self.model, self.data_seed, self.lacks = model, data_seed, lacks
        self.record = EarlyStop({"val_loss_again": float("nan")})
        self.closed = False

    def restore(self, parts, metadata):
        if self.lacks:
            return self.lacks
        self.record.load(metadata["early_stop"])
        return None

    def start(self, step, total, forward):
        self.forward = forward

    def train_step(self, step, update):
        generator = torch.Generator().manual_seed(derive_seed(self.data_seed, "batch", step))
        rows = torch.randint(0, len(self.x), (CONFIG.batch_size,), generator=generator)
        loss = F.mse_loss(self.forward(self.x[rows]), self.y[rows])
        update(loss)
        return loss

    def observe(self, step, train_loss):
        with torch.no_grad():
            val_loss = F.mse_loss(self.model(self.x_val), self.y_val).item()
        row = {"step": step, "train_loss": train_loss, "val_loss": val_loss}
        return self.record.observe(row, val_loss, lambda: {"val_loss_again": val_loss})

    def checkpoint_state(self):
        return {}, json_metadata(early_stop=self.record.state())

    def close(self):
        self.closed = True

    def result(self, step):
        return TrainResult(early_stop_iteration=self.record.best_step, early_stop_val_loss=self.record.best_val_loss,
                           early_stop_test_metric=self.record.best["val_loss_again"], final_iteration=step,
                           final_val_loss=self.record.last_row["val_loss"], final_test_metric=0.0,
                           details={"weights_seen": step * CONFIG.batch_size})


def _model() -> nn.Linear:
    torch.manual_seed(1)
    return nn.Linear(4, 1)


MASK = {"weight": torch.tensor([[1.0, 0.0, 1.0, 1.0]])}


def _train(job_dir=None, **kwargs):
    model = _model()
    procedure = _Regression(model, data_seed=7, lacks=kwargs.pop("lacks", None))
    result = train_masked(model, CONFIG, procedure, steps_per_epoch=8, device="cpu", masks=MASK, job_dir=job_dir,
                          checkpoint_interval_s=0.0, **kwargs)
    return model, procedure, result


def test_the_engine_keeps_masks_exact_logs_rows_and_reports_the_early_stopping_point(tmp_path):
    model, procedure, result = _train(tmp_path)
    assert model.weight[0, 1].item() == 0.0 and model.weight[0, 0].item() != 0.0
    rows = read_jsonl(tmp_path / METRICS_FILE)
    assert [row["step"] for row in rows] == [3, 6, 9, 12]
    best = min(rows, key=lambda row: row["val_loss"])
    assert result.early_stop_iteration == best["step"] and result.early_stop_val_loss == best["val_loss"]
    assert result.early_stop_test_metric == best["val_loss"]  # what the toy keeps at its minimum
    assert result.final_iteration == 12 and result.final_val_loss == rows[-1]["val_loss"]
    assert result.weights_seen == 96 and result.to_dict()["weights_seen"] == 96
    assert procedure.closed and not (tmp_path / CHECKPOINT_FILE).exists()  # done: the checkpoint is gone


def test_a_job_with_no_steps_left_is_evaluated_once_for_its_result(tmp_path):
    model, procedure, result = _train(tmp_path, start_step=12)
    assert read_jsonl(tmp_path / METRICS_FILE) == []  # no row: nothing was trained
    assert result.final_iteration == result.early_stop_iteration == 12
    assert result.final_val_loss == procedure.record.last_row["val_loss"] == result.early_stop_val_loss


def test_a_killed_run_resumes_bit_for_bit(tmp_path):
    reference, _, reference_result = _train(tmp_path / "whole")
    with pytest.raises(TrainingInterrupted):
        _train(tmp_path / "killed", stop_after_step=7)  # the last checkpoint is at step 6
    assert (tmp_path / "killed" / CHECKPOINT_FILE).exists()
    resumed_progress = []
    model, _, result = _train(tmp_path / "killed", on_progress=resumed_progress.append)
    assert resumed_progress[0] == 6  # the resumed steps are reported first
    assert torch.equal(model.weight, reference.weight) and torch.equal(model.bias, reference.bias)
    assert result == reference_result
    assert read_jsonl(tmp_path / "killed" / METRICS_FILE) == read_jsonl(tmp_path / "whole" / METRICS_FILE)


def test_a_checkpoint_lacking_the_task_state_is_set_aside_and_the_job_restarts(tmp_path, capsys):
    reference, _, _ = _train(tmp_path / "whole")
    with pytest.raises(TrainingInterrupted):
        _train(tmp_path / "job", stop_after_step=7)
    model, _, result = _train(tmp_path / "job", lacks="toy state")
    assert "lacks its toy state; the job restarts from its start" in capsys.readouterr().err
    assert [path.name[:19] for path in (tmp_path / "job").glob("checkpoint*")] == ["checkpoint.corrupt-"]
    assert torch.equal(model.weight, reference.weight) and result.final_iteration == 12


def test_the_early_stop_record_and_the_result_round_trip():
    record = EarlyStop({"test": {"loss": float("nan")}})
    record.observe({"step": 1, "val_loss": 2.0}, 2.0, lambda: {"test": {"loss": 1.5}})
    record.observe({"step": 2, "val_loss": 3.0}, 3.0, lambda: pytest.fail("measured away from a minimum"))
    state = record.state()
    assert state == {"best_step": 1, "best_val_loss": 2.0, "best_test": {"loss": 1.5},
                     "last_row": {"step": 2, "val_loss": 3.0}}
    again = EarlyStop()
    again.load(state)
    assert (again.best_step, again.best_val_loss, again.best, again.last_row) == (1, 2.0, {"test": {"loss": 1.5}},
                                                                                  {"step": 2, "val_loss": 3.0})
    first = EarlyStop(keep_first=True)  # a trainer that must hold the weights of some evaluation
    first.observe({"step": 4}, float("nan"))
    assert first.best_step == 4
    result = TrainResult(1, 2.0, 0.5, 3, 2.5, 0.25, details={"beam_size": 4})
    assert pickle.loads(pickle.dumps(result)) == result and result.beam_size == 4
    with pytest.raises(AttributeError):
        result.final_test_accuracy
