"""Populations of Linear/ReLU networks on sparse kernels (train.kernels sparse/auto): all members at once as one
block-diagonal product (`training.population.sparse_stack`). Each member's forward and gradients are bitwise those
of its job trained alone on sparse kernels, and within the documented tolerance of the dense kernels; stacked and
alone give the same weights and masks; the choice is recorded per member and kept on resume."""

from __future__ import annotations

import json

import pytest
import torch

from ticketlab.api import find_tickets
from ticketlab.config import ExperimentConfig, ModelConfig, PruneConfig, TrainConfig
from ticketlab.lottery.keys import JobKey
from ticketlab.store import load_tensors, read_json
from ticketlab.training.kernel_choice import CHOICE_FILE, population_sparse_layer_names
from ticketlab.training.population.sparse_stack import BlockDiagonalLayout, batch_major, batch_sum, feature_major
from ticketlab.training.sparse_linear import SPARSE_TOLERANCE, MaskLayout, sparse_linear

DENSITIES = (0.4, 0.05, 1.0, 0.0, 0.2)  # one member per density: each member's own mask


def _stack(seed=0, count=len(DENSITIES), out_features=30, in_features=70, batch=16):
    generator = torch.Generator().manual_seed(seed)
    keep = torch.tensor(DENSITIES[:count]).view(count, 1, 1)
    masks = (torch.rand(count, out_features, in_features, generator=generator) < keep).float()
    weights = torch.randn(count, out_features, in_features, generator=generator) * masks
    bias = torch.randn(count, out_features, generator=generator)
    inputs = torch.randn(count, batch, in_features, generator=generator)
    upstream = torch.randn(count, batch, out_features, generator=generator)
    return masks, weights, bias, inputs, upstream


def test_each_member_is_bitwise_its_single_job_sparse_kernels_and_close_to_dense():
    masks, weights, bias, inputs, upstream = _stack()
    layout = BlockDiagonalLayout(masks)
    count = len(masks)
    outputs = batch_major(layout.forward(weights, bias, feature_major(inputs)), count)
    grad_inputs = batch_major(layout.input_gradient(weights, feature_major(upstream)), count)
    grad_weights = torch.full_like(weights, float("nan"))
    layout.weight_gradient(feature_major(upstream), feature_major(inputs), grad_weights)
    grad_bias = batch_sum(feature_major(upstream), count, torch.empty_like(bias))
    for member in range(len(masks)):
        weight, x = weights[member].clone().requires_grad_(), inputs[member].clone().requires_grad_()
        member_bias = bias[member].clone().requires_grad_()
        y = sparse_linear(x, weight, member_bias, MaskLayout(masks[member]))
        grad_x, grad_w, grad_b = torch.autograd.grad(y, (x, weight, member_bias), upstream[member])
        assert torch.equal(outputs[member], y) and torch.equal(grad_inputs[member], grad_x)
        assert torch.equal(grad_weights[member], grad_w), member
        assert torch.equal(grad_bias[member], grad_b), member
    dense = (torch.baddbmm(bias.unsqueeze(1), inputs, weights.transpose(1, 2)), torch.bmm(upstream, weights),
             torch.bmm(upstream.transpose(1, 2), inputs) * masks)
    scales = (inputs.abs() @ weights.abs().transpose(1, 2), upstream.abs() @ weights.abs(),
              upstream.abs().transpose(1, 2) @ inputs.abs())
    for got, expected, scale in zip((outputs, grad_inputs, grad_weights), dense, scales):
        assert torch.all((got - expected).abs() <= SPARSE_TOLERANCE * (scale + bias.abs().max()) + 1e-30)
    assert torch.all(grad_weights[masks == 0] == 0)  # exactly 0 where pruned, not just small
    shared = layout.forward_shared(weights, bias, inputs[0])  # evaluation: every member on the same inputs
    assert torch.equal(batch_major(shared, count)[0], outputs[0])


def _config(kernels="sparse"):
    return ExperimentConfig(
        model=ModelConfig(name="mlp", hidden=(32, 16)),
        train=TrainConfig(optimizer="adam", lr=3e-3, batch_size=32, steps="40it", eval_every="10it",
                          kernels=kernels),
        prune=PruneConfig(rate=0.6, output_rate=0.3, levels=2),
        variants=("iterative_reset", "random_pruning"), trials=2)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_data_for_module, one_thread_for_module):
    root = tmp_path_factory.mktemp("sparse_population")
    stacked = find_tickets(_config(), root=root / "stacked", data=tiny_data_for_module, progress=False,
                           report=False, population=None)
    alone = find_tickets(_config(), root=root / "alone", data=tiny_data_for_module, progress=False, report=False,
                         population=1)
    return stacked, alone


def test_stacked_members_train_as_the_jobs_alone_on_sparse_kernels(runs):
    stacked, alone = runs
    assert read_json(stacked.run_dir / "population.json")["population"] > 1
    keys = [JobKey(trial, level, variant) for trial in range(2) for level in (1, 2)
            for variant in ("iterative_reset", "random_pruning")]
    for key in keys:
        together, single = key.directory(stacked.run_dir), key.directory(alone.run_dir)
        for name in ("mask.safetensors", "weights_final.safetensors"):
            a, b = load_tensors(together / name), load_tensors(single / name)
            assert all(torch.equal(a[tensor], b[tensor]) for tensor in a), (key, name)
        mask, final = load_tensors(together / "mask.safetensors"), load_tensors(together / "weights_final.safetensors")
        assert all(torch.all(final[name][~keep.bool()] == 0) for name, keep in mask.items())
        recorded = json.loads((together / CHOICE_FILE).read_text())
        assert recorded == {"kernels": "sparse", "sparse_layers": ["layers.1", "layers.3", "layers.5"]}
    assert len(stacked.rows) == len(alone.rows)
    for row, reference in zip(stacked.rows, alone.rows):  # evaluated on the same sparse kernels too
        assert {column: value for column, value in row.items() if "time" not in column} == \
            {column: value for column, value in reference.items() if "time" not in column}


def test_a_population_keeps_its_members_recorded_choice_and_auto_calibrates_once(tmp_path):
    masks, *_ = _stack(count=3)
    model = torch.nn.Sequential(torch.nn.Linear(70, 30))
    member_masks = {"0.weight": masks[0]}
    stacked = {"0.weight": masks}
    jobs = [tmp_path / f"job{index}" for index in range(3)]
    for job in jobs:
        job.mkdir()
    chosen = population_sparse_layer_names(model, member_masks, stacked, "auto", 16, jobs, cache_root=tmp_path)
    assert all(json.loads((job / CHOICE_FILE).read_text())["sparse_layers"] == chosen for job in jobs)
    (cache,) = (tmp_path / "kernels").glob("*.json")
    assert list(json.loads(cache.read_text())) == [f"population3-30x70-b16-d{float(masks.mean()):.4f}"]
    for job in jobs:  # resumed: the recorded choice, whatever a calibration would say now
        (job / CHOICE_FILE).write_text(json.dumps({"kernels": "auto", "sparse_layers": ["0"]}))
    assert population_sparse_layer_names(model, member_masks, stacked, "auto", 16, jobs, cache_root=tmp_path) == ["0"]
    assert population_sparse_layer_names(model, member_masks, stacked, "dense", 16, jobs) == []


def test_a_sparse_population_killed_after_a_checkpoint_resumes_to_the_same_bytes(runs, tmp_path, tiny_data_for_module):
    import shutil

    from tests.lottery.interrupt import kill_population_after

    stacked, _ = runs
    run_dir = tmp_path / stacked.run_dir.name
    shutil.copytree(stacked.run_dir, run_dir)
    keys = [JobKey(trial, 1, variant) for trial in range(2) for variant in ("iterative_reset", "random_pruning")]
    kill_population_after(run_dir, keys, _config(), tiny_data_for_module, 25)  # checkpoints at 10, 20
    rerun = find_tickets(_config(), root=tmp_path, data=tiny_data_for_module, progress=False, report=False,
                         population=None)
    assert rerun.run_dir == run_dir and rerun.rows == stacked.rows
    for key in keys:
        assert (key.directory(run_dir) / "weights_final.safetensors").read_bytes() == \
            (key.directory(stacked.run_dir) / "weights_final.safetensors").read_bytes()
