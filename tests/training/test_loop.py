"""The training loop: exact masks under every optimizer, exact resume, schedules and data order."""

import math

import pytest
import torch

from ticketlab.config import TrainConfig
from ticketlab.models import build_model, initialize
from ticketlab.pruning import keep_top, prunable_weights, random_scores
from ticketlab.store import read_jsonl
from ticketlab.training.loop import TrainingInterrupted, batch_indices, iterations_per_epoch, train_model
from ticketlab.training.optim import learning_rate_at


def _model(seed=0):
    return initialize(build_model("mlp", (24,), 10, hidden=(32, 16)), "glorot_normal", seed)


def _half_masks(model):
    weights = prunable_weights(model)
    return keep_top(random_scores(weights, seed=1), {name: w.numel() // 2 for name, w in weights.items()})


OPTIMIZERS = [
    TrainConfig(optimizer="sgd", lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-3, batch_size=32, steps="60it", eval_every="20it"),
    TrainConfig(optimizer="adam", lr=3e-3, weight_decay=1e-3, batch_size=32, steps="60it", eval_every="20it"),
    TrainConfig(optimizer="adamw", lr=3e-3, weight_decay=0.1, batch_size=32, steps="60it", eval_every="20it"),
]


@pytest.mark.parametrize("config", OPTIMIZERS, ids=lambda c: c.optimizer)
def test_pruned_weights_stay_exactly_zero_and_get_no_update(tiny_data, config):
    model = _model()
    masks = _half_masks(model)
    initial = {name: p.detach().clone() for name, p in model.named_parameters()}
    train_model(model, tiny_data, config, masks=masks, data_seed=3)
    for name, parameter in model.named_parameters():
        if name in masks:
            assert torch.all(parameter[masks[name] == 0] == 0)
            assert not torch.equal(parameter[masks[name] == 1], initial[name][masks[name] == 1] * 1)
        else:
            assert not torch.equal(parameter, initial[name])  # biases train


@pytest.mark.parametrize("config", OPTIMIZERS, ids=lambda c: c.optimizer)
def test_resume_after_interruption_equals_uninterrupted(tiny_data, tmp_path, config):
    reference_model = _model()
    masks = _half_masks(reference_model)
    reference = train_model(reference_model, tiny_data, config, masks=masks, data_seed=3, job_dir=tmp_path / "a")

    interrupted = _model()
    with pytest.raises(TrainingInterrupted):  # killed at step 47: last checkpoint was at step 40
        train_model(interrupted, tiny_data, config, masks=masks, data_seed=3, job_dir=tmp_path / "b",
                    checkpoint_interval_s=0, stop_after_step=47)
    resumed_model = _model()
    resumed = train_model(resumed_model, tiny_data, config, masks=masks, data_seed=3, job_dir=tmp_path / "b",
                          checkpoint_interval_s=0)
    assert resumed == reference
    for (name, a), (_, b) in zip(reference_model.state_dict().items(), resumed_model.state_dict().items()):
        assert torch.equal(a, b), name
    assert read_jsonl(tmp_path / "a" / "metrics.jsonl") == read_jsonl(tmp_path / "b" / "metrics.jsonl")
    assert not (tmp_path / "b" / "checkpoint.safetensors").exists()


def test_early_stop_record_matches_metrics(tiny_data, tmp_path):
    config = TrainConfig(optimizer="adam", lr=1e-2, batch_size=32, steps="200it", eval_every="10it")
    result = train_model(_model(), tiny_data, config, masks={}, data_seed=0, job_dir=tmp_path)
    rows = read_jsonl(tmp_path / "metrics.jsonl")
    assert [row["step"] for row in rows] == list(range(10, 201, 10))
    best = min(rows, key=lambda row: row["val_loss"])
    assert result.early_stop_iteration == best["step"]
    assert result.early_stop_test_accuracy == best["test_accuracy"]
    assert result.final_iteration == 200
    assert 0.0 <= result.final_train_accuracy <= 1.0


def test_batches_cover_each_epoch_once_and_depend_on_seed():
    per_epoch = iterations_per_epoch(100, 30)
    assert per_epoch == 3
    seen = torch.cat([batch_indices(step, 100, 30, data_seed=4) for step in range(per_epoch)])
    assert len(set(seen.tolist())) == 90
    assert not torch.equal(batch_indices(0, 100, 30, 4), batch_indices(0, 100, 30, 5))
    assert not torch.equal(batch_indices(0, 100, 30, 4), batch_indices(3, 100, 30, 4))


def test_learning_rate_schedules():
    step_config = TrainConfig(lr=0.1, schedule="step", milestones=("10it", "20it"), gamma=0.1, warmup="5it")
    assert learning_rate_at(0, step_config, 30, 10) == pytest.approx(0.1 * 1 / 5)
    assert learning_rate_at(4, step_config, 30, 10) == pytest.approx(0.1)
    assert learning_rate_at(10, step_config, 30, 10) == pytest.approx(0.01)
    assert learning_rate_at(25, step_config, 30, 10) == pytest.approx(0.001)
    epochs = TrainConfig(lr=0.1, schedule="step", milestones=("1ep",))
    assert learning_rate_at(9, epochs, 30, 10) == pytest.approx(0.1)
    assert learning_rate_at(10, epochs, 30, 10) == pytest.approx(0.01)
    cosine = TrainConfig(lr=0.2, schedule="cosine")
    assert learning_rate_at(0, cosine, 100, 10) == pytest.approx(0.2)
    assert learning_rate_at(50, cosine, 100, 10) == pytest.approx(0.1)
    assert learning_rate_at(100, cosine, 100, 10) == pytest.approx(0.0, abs=1e-12)
    assert math.isclose(learning_rate_at(3, TrainConfig(lr=0.5), 10, 1), 0.5)


def test_gradient_clipping_bounds_the_update_and_keeps_masks_exact(tiny_data):
    """train.clip_grad_norm: one SGD step (lr 1, no momentum) moves the weights by exactly the clipped gradient,
    whose global norm is the bound; pruned weights stay zero."""
    import dataclasses

    from ticketlab.config import TrainConfig
    from ticketlab.models import build_model, initialize
    from ticketlab.pruning import prunable_weights
    from ticketlab.training.loop import train_model

    model = initialize(build_model("mlp", (24,), 10, hidden=(16,)), "glorot_normal", 0)
    masks = {name: (torch.rand(w.shape, generator=torch.Generator().manual_seed(1)) > 0.5).float()
             for name, w in prunable_weights(model).items()}
    before = {name: value.clone() for name, value in model.state_dict().items()}
    config = dataclasses.replace(TrainConfig(optimizer="sgd", lr=1.0, batch_size=50, steps="1it", eval_every="1it"),
                                 clip_grad_norm=0.01)
    train_model(model, tiny_data, config, masks=masks, data_seed=0)
    moved = torch.cat([(before[name] * masks.get(name, 1) - value).flatten()
                       for name, value in model.state_dict().items()])
    assert abs(moved.norm().item() - 0.01) < 1e-6
    assert all(torch.all(model.state_dict()[name][mask == 0] == 0) for name, mask in masks.items())


def test_a_checkpoint_without_the_mask_in_force_is_set_aside_for_a_changing_mask(tmp_path, capsys):
    """A job whose mask changes while it trains cannot resume without the mask in force: the population reads such
    a checkpoint as none (set aside, one line), as the engine does; with the mask, it reads it back exactly."""
    from ticketlab.training.loop import EarlyStopRecord, read_checkpoint_or_set_aside, write_checkpoint

    weights = {"weight": torch.arange(6.0).view(2, 3)}
    mask = {"weight": torch.tensor([[True, False, True], [False, True, True]])}
    path = tmp_path / "checkpoint.safetensors"
    write_checkpoint(path, weights, {}, 7, EarlyStopRecord())
    assert read_checkpoint_or_set_aside(path, "cpu")[2] == 7  # a fixed mask needs none
    assert read_checkpoint_or_set_aside(path, "cpu", needs_mask=True) is None
    assert not path.exists() and len(list(tmp_path.glob("checkpoint.corrupt-*.safetensors"))) == 1
    assert capsys.readouterr().err.count("lacks its mask") == 1
    write_checkpoint(path, weights, {}, 7, EarlyStopRecord(), mask)
    model_state, _, step, _, in_force = read_checkpoint_or_set_aside(path, "cpu", needs_mask=True)
    assert step == 7 and torch.equal(in_force["weight"], mask["weight"]) and torch.equal(model_state["weight"],
                                                                                        weights["weight"])
