"""Sparse kernels for masked Linear layers (train.kernels): agreement with the dense path within the documented
tolerance, exact zeros, bit-for-bit resume, the recorded choice, the auto calibration's cache, and the CLI."""

import json

import pytest
import torch
from torch.nn import functional as F

from ticketlab.cli import main
from ticketlab.config import TrainConfig
from ticketlab.models import build_model, initialize
from ticketlab.pruning import keep_top, prunable_weights, random_scores
from ticketlab.store import read_jsonl
from ticketlab.training.kernel_choice import CHOICE_FILE, sparse_layer_names
from ticketlab.training.loop import TrainingInterrupted, train_model
from ticketlab.training.sparse_linear import SPARSE_TOLERANCE, MaskLayout, sparse_linear

CONFIG = TrainConfig(optimizer="adam", lr=3e-3, batch_size=32, steps="60it", eval_every="20it", kernels="sparse")


def _model(seed=0):
    return initialize(build_model("mlp", (24,), 10, hidden=(32, 16)), "glorot_normal", seed)


def _masks(model, keep=0.3):
    weights = prunable_weights(model)
    return keep_top(random_scores(weights, seed=1), {name: round(w.numel() * keep) for name, w in weights.items()})


@pytest.mark.parametrize("shape, density", [((30, 70), 0.4), ((7, 300), 0.05), ((16, 5), 1.0), ((9, 11), 0.0)])
def test_forward_and_gradients_agree_with_the_dense_path(shape, density):
    generator = torch.Generator().manual_seed(0)
    mask = (torch.rand(shape, generator=generator) < density).float()
    weight = (torch.randn(shape, generator=generator) * mask).requires_grad_()
    bias = torch.randn(shape[0], generator=generator).requires_grad_()
    inputs = torch.randn(3, 5, shape[1], generator=generator).requires_grad_()  # leading dims are flattened
    grad_outputs = torch.randn(3, 5, shape[0], generator=generator)

    def run(linear):
        outputs = linear(inputs, weight, bias)
        grads = torch.autograd.grad(outputs, (inputs, weight, bias), grad_outputs)
        return outputs.detach(), *grads

    dense = run(F.linear)
    sparse = run(lambda x, w, b: sparse_linear(x, w, b, MaskLayout(mask)))
    flat_inputs = inputs.detach().reshape(-1, shape[1]).abs()
    # the bound: SPARSE_TOLERANCE times the sum of the absolute products behind each entry
    scales = (flat_inputs @ weight.detach().abs().t(), grad_outputs.reshape(-1, shape[0]).abs() @ weight.detach().abs(),
              grad_outputs.reshape(-1, shape[0]).abs().t() @ flat_inputs, grad_outputs.abs().sum((0, 1)))
    for got, expected, scale in zip(sparse, dense, scales):
        if expected.shape == weight.shape:
            assert torch.all(got[mask == 0] == 0)  # the pruned gradient is exactly 0, not just small
            expected = expected * mask
        assert torch.all((got - expected).abs().reshape(scale.shape) <= SPARSE_TOLERANCE * scale + 1e-30)


def test_training_keeps_pruned_weights_zero_and_stays_close_to_dense(tiny_data):
    results, models = {}, {}
    for kernels in ("dense", "sparse"):
        model = _model()
        masks = _masks(model)
        config = TrainConfig(**{**CONFIG.__dict__, "kernels": kernels, "steps": "30it", "eval_every": "30it"})
        results[kernels] = train_model(model, tiny_data, config, masks=masks, data_seed=3)
        models[kernels] = model
        for name, parameter in model.named_parameters():
            if name in masks:
                assert torch.all(parameter[masks[name] == 0] == 0)
        assert all("forward" not in module.__dict__ for module in model.modules())  # the swap is undone
    for (name, dense), (_, sparse) in zip(models["dense"].state_dict().items(), models["sparse"].state_dict().items()):
        assert torch.allclose(dense, sparse, atol=1e-3), name  # 30 Adam steps apart only by rounding
    assert abs(results["dense"].final_test_metric - results["sparse"].final_test_metric) <= 0.02


def test_resume_on_sparse_kernels_is_bitwise(tiny_data, tmp_path):
    reference_model = _model()
    masks = _masks(reference_model)
    reference = train_model(reference_model, tiny_data, CONFIG, masks=masks, data_seed=3, job_dir=tmp_path / "a")
    assert json.loads((tmp_path / "a" / CHOICE_FILE).read_text()) == {
        "kernels": "sparse", "sparse_layers": ["layers.1", "layers.3", "layers.5"]}
    with pytest.raises(TrainingInterrupted):
        train_model(_model(), tiny_data, CONFIG, masks=masks, data_seed=3, job_dir=tmp_path / "b",
                    checkpoint_interval_s=0, stop_after_step=47)
    resumed_model = _model()
    resumed = train_model(resumed_model, tiny_data, CONFIG, masks=masks, data_seed=3, job_dir=tmp_path / "b",
                          checkpoint_interval_s=0)
    assert resumed == reference
    for (name, a), (_, b) in zip(reference_model.state_dict().items(), resumed_model.state_dict().items()):
        assert torch.equal(a, b), name
    assert read_jsonl(tmp_path / "a" / "metrics.jsonl") == read_jsonl(tmp_path / "b" / "metrics.jsonl")


def test_auto_calibrates_once_and_a_job_keeps_its_recorded_choice(tmp_path, monkeypatch):
    model = _model()
    masks = _masks(model, keep=0.05)
    names = sparse_layer_names(model, masks, "auto", 32, job_dir=tmp_path / "job", cache_root=tmp_path / "cache")
    cache_files = list((tmp_path / "cache" / "kernels").glob("*.json"))
    assert len(cache_files) == 1 and len(json.loads(cache_files[0].read_text())) == 3  # one verdict per layer
    monkeypatch.setattr("ticketlab.training.kernel_choice.calibrate", lambda *args: pytest.fail("recalibrated"))
    assert sparse_layer_names(model, masks, "auto", 32, cache_root=tmp_path / "cache") == names  # cached
    (tmp_path / "job" / CHOICE_FILE).write_text(json.dumps({"kernels": "auto", "sparse_layers": ["layers.2"]}))
    assert sparse_layer_names(model, masks, "auto", 32, job_dir=tmp_path / "job") == ["layers.2"]  # resume
    assert sparse_layer_names(model, masks, "dense", 32, job_dir=tmp_path / "job") == []


def test_bad_kernels_value_is_one_line(capsys, tmp_path):
    for flag in ("--train.kernels", "--kernels"):
        assert main(["find", flag, "fast", "--root", str(tmp_path)]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert lines == ["ticketlab: error: unknown train.kernels 'fast'; allowed: dense, sparse, auto, compact"]
    assert not any(tmp_path.iterdir())


def test_kernels_flag_sets_the_recorded_config(capsys):
    assert main(["config", "--kernels", "auto"]) == 0
    assert json.loads(capsys.readouterr().out)["train"]["kernels"] == "auto"


def test_a_deep_copy_made_under_sparse_kernels_computes_with_its_own_weights():
    import copy

    from ticketlab.training.sparse_linear import masked_linear_names, sparse_linear_layers

    model = _model()
    masks = _masks(model)
    inputs = torch.randn(4, 24, generator=torch.Generator().manual_seed(0))
    with sparse_linear_layers(model, masks, masked_linear_names(model, masks)):
        twin = copy.deepcopy(model)
        with torch.no_grad():
            for parameter in twin.parameters():
                parameter.mul_(2)
        assert not torch.allclose(twin(inputs), model(inputs))
