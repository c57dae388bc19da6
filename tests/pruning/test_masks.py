"""Masks against an independent numpy recomputation and against torch.nn.utils.prune."""

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from ticketlab.errors import ConfigError
from ticketlab.models import build_model, initialize
from ticketlab.pruning import (
    check_masks,
    full_masks,
    keep_top,
    magnitude_scores,
    next_keep_counts,
    output_layer_name,
    prunable_weights,
    random_scores,
    remaining_counts,
    remaining_percent,
)


def _model(seed=0):
    return initialize(build_model("mlp", (20,), 5, hidden=(30, 16)), "glorot_normal", seed)


def _numpy_layerwise(weight: np.ndarray, mask: np.ndarray, fraction: float) -> np.ndarray:
    alive = np.flatnonzero(mask.ravel())
    n_prune = round(fraction * alive.size)
    order = alive[np.argsort(np.abs(weight.ravel()[alive]), kind="stable")]
    result = mask.ravel().copy()
    result[order[:n_prune]] = 0
    return result.reshape(mask.shape)


def test_selects_linear_weights_only_and_output_layer():
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
    assert list(prunable_weights(model)) == ["0.weight", "3.weight"]
    assert output_layer_name(model) == "3.weight"


def test_layerwise_iterative_matches_numpy_recomputation():
    model = _model()
    weights = {name: w.detach() for name, w in prunable_weights(model).items()}
    rates = {name: 0.2 for name in weights} | {output_layer_name(model): 0.1}
    masks = full_masks(weights)
    numpy_masks = {name: np.ones(w.shape) for name, w in weights.items()}
    generator = torch.Generator().manual_seed(3)
    for _ in range(5):
        # new "trained" weights each round, as IMP sees them
        weights = {name: torch.randn(w.shape, generator=generator) for name, w in weights.items()}
        keep = next_keep_counts(remaining_counts(masks), rates, "layerwise")
        masks = keep_top(magnitude_scores(weights), keep, eligible=masks)
        numpy_masks = {
            name: _numpy_layerwise(weights[name].numpy(), numpy_masks[name], rates[name]) for name in weights
        }
        for name in weights:
            np.testing.assert_array_equal(masks[name].numpy(), numpy_masks[name])
    # a masked-out weight never comes back, and counts follow round(rate * remaining)
    expected = 30 * 20
    for _ in range(5):
        expected -= round(0.2 * expected)
    assert remaining_counts(masks)["layers.1.weight"] == expected


def test_layerwise_matches_torch_prune_l1_unstructured_iteratively():
    peer = _model(1)
    linears = {f"{name}.weight": module for name, module in peer.named_modules() if isinstance(module, nn.Linear)}
    ours = full_masks(prunable_weights(peer))
    generator = torch.Generator().manual_seed(7)
    for _round in range(4):
        trained = {name: torch.randn(module.weight.shape, generator=generator) for name, module in linears.items()}
        keep = next_keep_counts(remaining_counts(ours), dict.fromkeys(ours, 0.2), "layerwise")
        ours = keep_top(magnitude_scores(trained), keep, eligible=ours)
        for name, module in linears.items():
            prune.l1_unstructured(module, "weight", amount=0.2, importance_scores=trained[name])
        for name, module in linears.items():
            torch.testing.assert_close(ours[name], module.weight_mask, rtol=0, atol=0)


def test_global_matches_torch_global_unstructured():
    model = _model(2)
    weights = {name: w.detach().clone() for name, w in prunable_weights(model).items()}
    ours = full_masks(weights)
    linears = [(module, "weight") for module in model.modules() if isinstance(module, nn.Linear)]
    for _round in range(3):
        keep = next_keep_counts(remaining_counts(ours), dict.fromkeys(ours, 0.3), "global")
        ours = keep_top(magnitude_scores(weights), keep, eligible=ours)
        prune.global_unstructured(linears, pruning_method=prune.L1Unstructured, amount=0.3)
        peer = {f"{name}.weight": module.weight_mask for name, module in model.named_modules() if isinstance(module, nn.Linear)}
        for name in ours:
            torch.testing.assert_close(ours[name], peer[name], rtol=0, atol=0)
    total = sum(w.numel() for w in weights.values())
    expected = total
    for _ in range(3):
        expected -= round(0.3 * expected)
    assert sum(remaining_counts(ours).values()) == expected
    # global pruning gives layers different sparsities
    assert len({round(m.mean().item(), 3) for m in ours.values()}) > 1


def test_keep_top_exact_counts_and_random_scores_are_seeded():
    model = _model()
    weights = prunable_weights(model)
    counts = {name: w.numel() // 3 for name, w in weights.items()}
    first = keep_top(random_scores(weights, seed=5), counts)
    second = keep_top(random_scores(weights, seed=5), counts)
    third = keep_top(random_scores(weights, seed=6), counts)
    assert remaining_counts(first) == counts
    assert all(torch.equal(first[n], second[n]) for n in first)
    assert any(not torch.equal(first[n], third[n]) for n in first)
    assert remaining_percent(first) == pytest.approx(100 * sum(counts.values()) / sum(w.numel() for w in weights.values()))


def test_check_masks_rejects_non_binary_and_wrong_shapes():
    weights = {"a": torch.zeros(2, 3)}
    with pytest.raises(ConfigError, match="other than 0 and 1"):
        check_masks({"a": torch.full((2, 3), 0.5)}, weights)
    with pytest.raises(ConfigError, match="shape"):
        check_masks({"a": torch.ones(3, 2)}, weights)
    with pytest.raises(ConfigError, match="do not match"):
        check_masks({"b": torch.ones(2, 3)}, weights)
