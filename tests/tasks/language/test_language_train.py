"""The LSTM language model, its prunable tensors, evaluation, exact masks and exact resume."""

import math
from dataclasses import replace

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from ticketlab.config import ExperimentConfig, TrainConfig
from ticketlab.errors import ConfigError
from ticketlab.presets import preset
from ticketlab.pruning import full_masks, keep_top, prunable_weights
from ticketlab.store import read_jsonl
from ticketlab.tasks import load_task
from ticketlab.tasks.language import TASK, LSTMLanguageModel, evaluate, initialize_language_model, train_language_model
from ticketlab.tasks.language.streams import batchify, epoch_offset, steps_per_epoch
from ticketlab.training.loop import TrainingInterrupted


def _model(vocab, hidden=(12, 12), tie=False, dropout=0.0, seed=0, init="uniform_0.1"):
    return initialize_language_model(LSTMLanguageModel(vocab, hidden, dropout=dropout, tie_weights=tie), init, seed)


def _sparse_masks(model, keep_fraction=0.3, seed=1):
    weights = prunable_weights(model)
    generator = torch.Generator().manual_seed(seed)
    scores = {name: torch.rand(weight.shape, generator=generator) for name, weight in weights.items()}
    return keep_top(scores, {name: int(keep_fraction * w.numel()) for name, w in weights.items()})


def _config(**changes):
    base = TrainConfig(optimizer="adam", lr=1e-2, batch_size=4, steps="24it", eval_every="6it", clip_grad_norm=1.0)
    return replace(base, **changes)


def test_prunable_weights_by_module_type_and_tied_once():
    model = LSTMLanguageModel(30, (8, 8))
    assert list(prunable_weights(model)) == [
        "encoder.weight", "lstm.0.weight_ih_l0", "lstm.0.weight_hh_l0", "lstm.1.weight_ih_l0",
        "lstm.1.weight_hh_l0", "decoder.weight"]
    tied = LSTMLanguageModel(30, (8,), tie_weights=True)
    assert list(prunable_weights(tied)) == ["encoder.weight", "lstm.0.weight_ih_l0", "lstm.0.weight_hh_l0"]
    assert tied.decoder.weight is tied.encoder.weight
    assert set(prunable_weights(tied)) <= {name for name, _ in tied.named_parameters()}
    plain = nn.Sequential(nn.LSTM(3, 4, num_layers=2, bidirectional=True), nn.GRU(8, 5), nn.LSTM(5, 4, proj_size=2))
    names = list(prunable_weights(plain))
    assert names[:4] == ["0.weight_ih_l0", "0.weight_hh_l0", "0.weight_ih_l0_reverse", "0.weight_hh_l0_reverse"]
    assert len(names) == 8 + 2 + 3 and names[-1] == "2.weight_hr_l0" and not any("bias" in name for name in names)
    with pytest.raises(ConfigError, match="tie_weights needs"):
        LSTMLanguageModel(30, (8,), embedding_dim=6, tie_weights=True)


def test_initialization_is_seeded_and_bounded():
    first, again, other = _model(20, seed=3), _model(20, seed=3), _model(20, seed=4)
    for (name, a), b, c in zip(first.state_dict().items(), again.state_dict().values(), other.state_dict().values()):
        assert torch.equal(a, b) and not torch.equal(a, c), name
        assert a.abs().max() <= 0.1
    tied = _model(20, hidden=(12,), tie=True, init="glorot_normal")
    assert tied.decoder.weight is tied.encoder.weight and tied.lstm[0].bias_ih_l0.abs().max() == 0
    torch_default = _model(20, init="torch_default")
    assert torch_default.lstm[0].weight_hh_l0.abs().max() <= 1 / math.sqrt(12)
    with pytest.raises(ConfigError, match="unknown model.init 'uniform'"):
        _model(20, init="uniform")


def test_evaluate_matches_independent_cross_entropy(char_data):
    model = _model(char_data.vocab_size)
    result = evaluate(model, char_data, "val", streams=3)
    length = len(char_data.val) // 3
    columns = char_data.val[: 3 * length].view(3, length)  # stream b = tokens b*length .. (b+1)*length-1
    with torch.no_grad():
        total, count = 0.0, 0
        for row in columns:  # one stream at a time, the whole stream in one call
            logits, _ = model(row[:-1].unsqueeze(1))
            total += F.cross_entropy(logits[:, 0], row[1:], reduction="sum").item()
            count += length - 1
    assert result["loss"] == pytest.approx(total / count, rel=1e-5)
    assert result["bits_per_char"] == pytest.approx(total / count / math.log(2), rel=1e-5)
    words = replace(char_data, level="word")
    assert evaluate(model, words, "test")["perplexity"] == pytest.approx(math.exp(evaluate(model, words, "test")["loss"]))
    with pytest.raises(ConfigError, match="vocabulary"):
        evaluate(_model(char_data.vocab_size + 1), char_data, "val")


def test_segments_follow_data_seed(char_data):
    config = _config()
    per_epoch = steps_per_epoch(char_data, config)
    assert per_epoch == (len(char_data.train) // 4 - 8) // 8
    offsets = {seed: [epoch_offset(8, seed, epoch) for epoch in range(6)] for seed in (0, 1)}
    assert offsets[0] != offsets[1] and all(0 <= o < 8 for o in offsets[0] + offsets[1])
    assert batchify(torch.arange(10), 3).tolist() == [[0, 3, 6], [1, 4, 7], [2, 5, 8]]


def test_masked_weights_stay_zero_with_tied_weights_and_dropout(char_data):
    model = _model(char_data.vocab_size, hidden=(12,), tie=True, dropout=0.3)
    masks = _sparse_masks(model)
    config = _config(optimizer="sgd", lr=0.5, momentum=0.9, weight_decay=1e-3, steps="10it", eval_every="5it")
    result = train_language_model(model, char_data, config, masks=masks, data_seed=0)
    weights = prunable_weights(model)
    for name, mask in masks.items():
        assert torch.all(weights[name][mask == 0] == 0), name
        assert torch.any(weights[name][mask == 1] != 0), name
    assert model.decoder.weight is model.encoder.weight
    keys = {"early_stop_iteration", "early_stop_val_loss", "early_stop_test_metric", "final_iteration",
            "final_val_loss", "final_test_metric", "early_stop_test_loss", "final_test_loss", "final_train_loss"}
    assert set(result.to_dict()) == keys and result.final_iteration == 10


def test_training_learns_and_logs_metrics(char_data, tmp_path):
    model = _model(char_data.vocab_size)
    before = evaluate(model, char_data, "val")["loss"]
    result = train_language_model(model, char_data, _config(lr=3e-2, steps="40it", eval_every="10it"),
                                  masks=full_masks(prunable_weights(model)), data_seed=0, job_dir=tmp_path)
    rows = read_jsonl(tmp_path / "metrics.jsonl")
    assert [row["step"] for row in rows] == [10, 20, 30, 40]
    assert result.final_val_loss < before - 0.3
    best = min(rows, key=lambda row: row["val_loss"])
    assert result.early_stop_iteration == best["step"] and result.early_stop_test_metric == best["test_bits_per_char"]
    assert all(("test_loss" in row) == (row["val_loss"] <= min(r["val_loss"] for r in rows[: i + 1]))
               for i, row in enumerate(rows))


def test_kill_and_resume_is_bitwise_equal(char_data, tmp_path, one_thread):
    config = _config(optimizer="sgd", lr=1.0, momentum=0.9, steps="30it", eval_every="5it")
    snapshots = {}

    def run(job_dir, stop_after=None):
        model = _model(char_data.vocab_size, dropout=0.2)
        masks = _sparse_masks(model)
        save = lambda step, m, optimizer: snapshots.setdefault((job_dir.name, step), {
            k: v.clone() for k, v in m.state_dict().items()})
        kwargs = dict(masks=masks, data_seed=7, job_dir=job_dir, checkpoint_interval_s=0.0, snapshot_steps=(3,),
                      on_snapshot=save, stop_after_step=stop_after)
        return model, train_language_model(model, char_data, config, **kwargs)

    reference_model, reference = run(tmp_path / "whole")
    with pytest.raises(TrainingInterrupted):
        run(tmp_path / "killed", stop_after=17)  # mid-epoch: the carried hidden state is in the checkpoint
    assert (tmp_path / "killed" / "checkpoint.safetensors").exists()
    resumed_model, resumed = run(tmp_path / "killed")
    assert resumed.to_dict() == reference.to_dict()
    for (name, a), b in zip(reference_model.state_dict().items(), resumed_model.state_dict().values()):
        assert torch.equal(a, b), name
    assert read_jsonl(tmp_path / "whole" / "metrics.jsonl") == read_jsonl(tmp_path / "killed" / "metrics.jsonl")
    assert all(torch.equal(a, b) for a, b in zip(snapshots[("whole", 3)].values(), snapshots[("killed", 3)].values()))
    assert not (tmp_path / "killed" / "checkpoint.safetensors").exists()


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_damaged_checkpoint_is_set_aside_and_the_job_restarts(char_data, tmp_path, one_thread, capsys, damage):
    config = _config(steps="12it", eval_every="4it")

    def run(job_dir, stop_after=None):
        model = _model(char_data.vocab_size)
        return model, train_language_model(model, char_data, config, masks=_sparse_masks(model), data_seed=3,
                                           job_dir=job_dir, checkpoint_interval_s=0.0, stop_after_step=stop_after)

    _, reference = run(tmp_path / "whole")
    with pytest.raises(TrainingInterrupted):
        run(tmp_path / "killed", stop_after=6)
    checkpoint = tmp_path / "killed" / "checkpoint.safetensors"
    payload = bytearray(checkpoint.read_bytes())
    if damage == "truncate":
        payload = payload[: len(payload) // 2]
    else:
        payload[-9] ^= 0x10  # a bit inside the last tensor's bytes: the file still parses
    checkpoint.write_bytes(bytes(payload))
    _, resumed = run(tmp_path / "killed")
    assert resumed.to_dict() == reference.to_dict()  # restarted from its start: the same numbers
    assert len(list((tmp_path / "killed").glob("checkpoint.corrupt-*.safetensors"))) == 1
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "restarts from its start" in warnings[0]


def test_task_interface_and_presets(char_data):
    task = load_task("language")
    assert task is TASK and task.stackable(None, "cpu", 2) is False and task.per_step_hook(None, None) is None
    config = preset("lstm_tiny")
    assert task.metric(config).name == "bits_per_char" and not task.metric(config).higher_is_better
    word_metric = task.metric(preset("lstm_ptb_small"))
    assert (word_metric.name, word_metric.log_scale) == ("perplexity", True)
    model = task.initialize(task.build_model(config, char_data), config, 0)
    assert isinstance(model, LSTMLanguageModel) and model.lstm[0].hidden_size == 16
    assert task.steps_per_epoch(char_data, config.train) == steps_per_epoch(char_data, config.train)
    small, medium = preset("lstm_ptb_small"), preset("lstm_wikitext2_medium")
    assert (small.train.milestones[0], len(small.train.milestones), small.train.gamma) == ("4ep", 9, 0.5)
    assert (medium.train.milestones[0], len(medium.train.milestones)) == ("6ep", 33)
    assert medium.model.hidden == (650, 650) and medium.model.dropout == 0.5 and medium.data.sequence_length == 35
    for name in ("lstm_ptb_small", "lstm_ptb_medium", "lstm_wikitext2_small", "lstm_wikitext2_medium",
                 "lstm_tiny_shakespeare", "lstm_tiny"):
        assert preset(name).task == "language" and preset(name).prune.output_rate is None
    assert ExperimentConfig(task="language").replace(**{"data.name": "ptb", "model.name": "lstm"}).validate()
