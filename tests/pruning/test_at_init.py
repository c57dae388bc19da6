"""Pruning-at-initialization scores against independent computations: SNIP by hand in numpy, SynFlow's
conservation law on a linear network, GraSP's Hessian-gradient product against finite differences, and exact
sparsity for every method and scope."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ticketlab.pruning import keep_top, magnitude_scores, prunable_weights, random_scores
from ticketlab.pruning.masks import exponential_keep_schedule, shuffle_within_layers
from ticketlab.pruning.scores.gradients import grasp_scores, hessian_gradient_product, loss_gradient, snip_scores
from ticketlab.pruning.scores.synflow import synflow_mask, synflow_scores
from ticketlab.pruning.early_bird import EarlyBirdDetector, batchnorm_scales, channel_mask, mask_distance


def _net(activation=nn.ReLU, bias=False, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 4, bias=bias), activation(), nn.Linear(4, 2, bias=bias)).double()


def _batches(seed=0, count=2):
    generator = torch.Generator().manual_seed(seed)
    return [(torch.randn(5, 3, generator=generator, dtype=torch.float64), torch.randint(0, 2, (5,), generator=generator))
            for _ in range(count)]


def _losses(batches):
    def losses(model):
        for inputs, labels in batches:
            yield F.cross_entropy(model(inputs), labels)
    return losses


def test_snip_is_the_gradient_times_weight_computed_by_hand():
    model, batches = _net(), _batches()
    w1, w2 = (model[0].weight.detach().numpy(), model[2].weight.detach().numpy())
    g1, g2 = np.zeros_like(w1), np.zeros_like(w2)
    for inputs, labels in batches:  # backpropagation of mean cross-entropy through Linear-ReLU-Linear, by hand
        x, n = inputs.numpy(), len(labels)
        h = x @ w1.T
        a = np.maximum(h, 0)
        z = a @ w2.T
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        dz = (p - np.eye(2)[labels.numpy()]) / n
        g2 += dz.T @ a
        g1 += ((dz @ w2) * (h > 0)).T @ x
    scores = snip_scores(model, _losses(batches))
    np.testing.assert_allclose(scores["0.weight"].numpy(), np.abs(g1 * w1), rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(scores["2.weight"].numpy(), np.abs(g2 * w2), rtol=1e-10, atol=1e-14)
    assert model[0].weight.grad is None  # the caller's model is left untouched


def test_synflow_conserves_the_total_score_of_every_layer_of_a_linear_network():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(6, 5, bias=False), nn.ReLU(), nn.Linear(5, 4, bias=False), nn.ReLU(),
                          nn.Linear(4, 3, bias=False))
    scores = synflow_scores(model, torch.ones(1, 6))
    magnitudes = [np.abs(layer.weight.detach().numpy().astype(np.float64)) for layer in model[::2]]
    flow = np.ones(3) @ magnitudes[2] @ magnitudes[1] @ magnitudes[0] @ np.ones(6)  # R = 1' |W3||W2||W1| 1
    for name, score in scores.items():
        assert float(score.sum()) == pytest.approx(flow, rel=1e-12), name
    # and each score is |θ| times the flow through it: layer 1's (i, j) entry = (1'|W3||W2|)_i |W1|_ij (1)_j
    upstream = np.ones(3) @ magnitudes[2] @ magnitudes[1]
    np.testing.assert_allclose(scores["0.weight"].numpy(), upstream[:, None] * magnitudes[0], rtol=1e-12)


def test_grasp_hessian_gradient_product_matches_finite_differences():
    model, batches = _net(activation=nn.Tanh, bias=True), _batches(seed=3)
    losses = _losses(batches)
    names = list(prunable_weights(model))
    gradient = loss_gradient(model, losses)
    product = hessian_gradient_product(model, losses)
    epsilon = 1e-5

    def shifted_gradient(sign):
        shifted = _net(activation=nn.Tanh, bias=True)
        shifted.load_state_dict(model.state_dict())
        with torch.no_grad():
            for name, weight in prunable_weights(shifted).items():
                weight.add_(sign * epsilon * gradient[name])
        return loss_gradient(shifted, losses)

    plus, minus = shifted_gradient(1), shifted_gradient(-1)
    for name in names:
        estimate = (plus[name] - minus[name]) / (2 * epsilon)
        np.testing.assert_allclose(product[name].numpy(), estimate.numpy(), rtol=1e-5, atol=1e-9)
    scores = grasp_scores(model, losses)  # θ ⊙ Hg: keeping the highest removes the largest -θ ⊙ Hg (Wang et al.)
    for name, weight in prunable_weights(model).items():
        np.testing.assert_allclose(scores[name].numpy(), (weight.detach() * product[name]).numpy())


def _mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))


def _float_losses(model_seed=0):
    generator = torch.Generator().manual_seed(model_seed)
    batches = [(torch.randn(10, 12, generator=generator), torch.randint(0, 3, (10,), generator=generator))
               for _ in range(2)]

    def losses(model):
        for inputs, labels in batches:
            yield F.cross_entropy(model(inputs), labels)
    return losses


@pytest.mark.parametrize("method", ["snip", "grasp", "synflow", "magnitude", "random"])
@pytest.mark.parametrize("scope", ["global", "layerwise"])
def test_every_method_hits_its_target_sparsity_exactly(method, scope):
    model = _mlp()
    weights = prunable_weights(model)
    sizes = {name: weight.numel() for name, weight in weights.items()}
    keep = {name: max(1, round(0.07 * size)) for name, size in sizes.items()} if scope == "layerwise" else 29
    if method == "synflow":
        masks = synflow_mask(model, torch.ones(1, 12), keep, rounds=20)
    else:
        scores = {"snip": lambda: snip_scores(model, _float_losses()),
                  "grasp": lambda: grasp_scores(model, _float_losses()),
                  "magnitude": lambda: magnitude_scores(weights),
                  "random": lambda: random_scores(weights, seed=4)}[method]()
        masks = keep_top(scores, keep)
    counts = {name: int(mask.sum()) for name, mask in masks.items()}
    assert set(torch.cat([mask.flatten() for mask in masks.values()]).tolist()) <= {0.0, 1.0}
    if scope == "layerwise":
        assert counts == keep
    else:
        assert sum(counts.values()) == keep


def test_synflow_iterates_on_the_masked_network():
    model = _mlp()
    one_round = synflow_mask(model, torch.ones(1, 12), 20, rounds=1)
    expected = keep_top(synflow_scores(model, torch.ones(1, 12)), 20)  # one round: plain top-k of the scores
    assert all(torch.equal(one_round[name], expected[name]) for name in expected)
    many = synflow_mask(model, torch.ones(1, 12), 20, rounds=30)
    # iterating avoids layer collapse: every layer keeps a weight (single-shot SynFlow need not)
    assert all(int(mask.sum()) > 0 for mask in many.values())


def test_exponential_keep_schedule_shrinks_to_the_exact_count():
    schedule = exponential_keep_schedule(1000, 10, 4)
    assert schedule == [round(1000 * 0.01 ** 0.25), round(1000 * 0.01 ** 0.5), round(1000 * 0.01 ** 0.75), 10]
    layered = exponential_keep_schedule({"a": 100, "b": 7}, {"a": 3, "b": 7}, 5)
    assert layered[-1] == {"a": 3, "b": 7} and all(step["b"] == 7 for step in layered)
    assert [step["a"] for step in layered] == sorted((step["a"] for step in layered), reverse=True)


def test_shuffle_within_layers_keeps_each_layers_count():
    masks = keep_top(magnitude_scores(prunable_weights(_mlp())), 40)
    shuffled = shuffle_within_layers(masks, seed=7)
    assert {n: int(m.sum()) for n, m in shuffled.items()} == {n: int(m.sum()) for n, m in masks.items()}
    assert any(not torch.equal(shuffled[name], masks[name]) for name in masks)
    again = shuffle_within_layers(masks, seed=7)
    assert all(torch.equal(again[name], shuffled[name]) for name in masks)


def test_mask_distance_is_the_fraction_of_differing_entries():
    first = {"a": torch.tensor([1.0, 0.0, 1.0, 1.0]), "b": torch.tensor([[1.0, 1.0], [0.0, 0.0]])}
    second = {"a": torch.tensor([1.0, 1.0, 1.0, 0.0]), "b": torch.tensor([[1.0, 1.0], [0.0, 1.0]])}
    assert mask_distance(first, second) == pytest.approx(3 / 8)
    assert mask_distance(first, first) == 0.0


def test_early_bird_detector_fires_once_the_window_is_stable():
    detector = EarlyBirdDetector(window=3, threshold=0.3)
    moving = [{"m": torch.tensor([1.0, 1.0, 0.0, 0.0])}, {"m": torch.tensor([0.0, 0.0, 1.0, 1.0])},
              {"m": torch.tensor([0.0, 1.0, 1.0, 0.0])}]
    assert [detector.observe(mask) for mask in moving] == [None, None, 0.5]  # newest vs the others: max(0.5, 0.5)
    assert not detector.detected
    stable = {"m": torch.tensor([1.0, 1.0, 1.0, 0.0])}
    assert detector.observe(stable) == 0.75 and not detector.detected  # 3 entries away from the oldest in the window
    assert detector.observe(stable) == 0.25 and detector.detected


def test_channel_mask_keeps_the_largest_batchnorm_scales_over_all_layers():
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.Conv2d(3, 2, 3), nn.BatchNorm2d(2))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([0.5, -2.0, 0.1]))
        model[3].weight.copy_(torch.tensor([1.0, -0.05]))
    masks = channel_mask(batchnorm_scales(model), keep_fraction=0.6)  # 3 of 5 channels: |γ| 2.0, 1.0, 0.5
    assert masks["1"].tolist() == [1.0, 1.0, 0.0] and masks["3"].tolist() == [1.0, 0.0]
