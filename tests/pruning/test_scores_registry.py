"""The scores registry: a toy score added in this one file (register, make masks, check them against numpy,
unregister), the one shared scores -> mask function for a sparsity, a scope and per-layer rates, and the built-in
scores behind their old function names."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from ticketlab.errors import ConfigError
from ticketlab.lottery.at_init import at_init_mask, check_task_supports
from ticketlab.pruning import (
    SCORES,
    Score,
    ScoreInputs,
    masks_from_scores,
    prunable_weights,
    score_mask,
    strategy_scores,
)
from ticketlab.pruning.channels import channel_scores


def _model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 5), nn.ReLU(), nn.Linear(5, 3))


def closeness(model, inputs):
    """The toy score: how close each weight is to 0.05 (higher = keep)."""
    return {name: -(weight.detach() - 0.05).abs() for name, weight in inputs.scored_weights(model).items()}


def _numpy_closeness(model):
    return {name: -np.abs(weight.detach().numpy() - 0.05) for name, weight in prunable_weights(model).items()}


def _top(values: np.ndarray, keep: int) -> np.ndarray:
    kept = np.zeros(values.size, dtype=bool)
    kept[np.argsort(-values.ravel(), kind="stable")[:keep]] = True
    return kept.reshape(values.shape)


@pytest.fixture
def toy_score():
    SCORES.register("closeness", Score(closeness))
    try:
        yield "closeness"
    finally:
        SCORES.unregister("closeness")


def test_toy_score_masks_match_numpy(toy_score):
    model = _model()
    expected_scores = _numpy_closeness(model)
    sizes = {name: values.size for name, values in expected_scores.items()}

    # per layer counts (a keep plan's dict)
    keep = {name: size // 3 for name, size in sizes.items()}
    masks = score_mask(toy_score, model, ScoreInputs(), keep)
    for name, values in expected_scores.items():
        assert masks[name].numpy().astype(bool).tolist() == _top(values, keep[name]).tolist()

    # a global sparsity: the best 30% of all weights together survive
    masks = masks_from_scores(SCORES.get(toy_score).compute(model, ScoreInputs()), sparsity=0.7, scope="global")
    joined = np.concatenate([values.ravel() for values in expected_scores.values()])
    total = joined.size
    expected = _top(joined, total - round(0.7 * total))
    assert np.concatenate([masks[name].numpy().ravel() for name in sizes]).astype(bool).tolist() == expected.tolist()

    # the lottery's pruning-at-init dispatch reads the registry: 'closeness_at_init' is the toy score
    task = SimpleNamespace(name="toy", prunable=prunable_weights, score_losses=None, ones_input=None)
    ctx = SimpleNamespace(task=task, device="cpu", data=None,
                          config=SimpleNamespace(prune=SimpleNamespace(score_batches=1, n_m_pattern=lambda: None),
                                                 train=None))
    check_task_supports(task, ["closeness_at_init", "closeness_at_init_shuffled"])
    masks = at_init_mask(ctx, "closeness_at_init", model, 40, seed=0)
    assert np.concatenate([masks[name].numpy().ravel() for name in sizes]).astype(bool).tolist() == \
        _top(joined, 40).tolist()


def test_toy_score_is_gone_after_unregister(toy_score):
    SCORES.unregister(toy_score)
    assert toy_score not in SCORES
    with pytest.raises(ConfigError, match="unknown score 'closeness'; allowed: magnitude, random, snip"):
        score_mask(toy_score, _model(), ScoreInputs(), 3)


def test_layerwise_sparsity_per_layer_rates_and_eligible_match_numpy():
    generator = torch.Generator().manual_seed(1)
    scores = {"a": torch.rand(4, 5, generator=generator), "b": torch.rand(7, generator=generator)}
    eligible = {"a": (torch.rand(4, 5, generator=generator) > 0.3).float(), "b": torch.ones(7)}
    masks = masks_from_scores(scores, sparsity=0.5, scope="layerwise", layer_sparsity={"b": 0.25}, eligible=eligible)
    for name, rate in (("a", 0.5), ("b", 0.25)):
        alive = eligible[name].numpy() > 0
        remaining = int(alive.sum())
        values = np.where(alive, scores[name].numpy().astype(np.float64), -np.inf)
        expected = _top(values, remaining - round(rate * remaining))
        assert masks[name].numpy().astype(bool).tolist() == expected.tolist()
        assert not (masks[name].numpy().astype(bool) & ~alive).any()


def test_global_minimum_per_tensor_and_argument_errors():
    scores = {"a": torch.tensor([0.1, 0.2, 0.3]), "b": torch.tensor([0.9, 0.8, 0.7, 0.6])}
    masks = masks_from_scores(scores, 2, min_per_tensor=1)  # b alone would take both survivors
    assert masks["a"].tolist() == [0.0, 0.0, 1.0] and masks["b"].tolist() == [1.0, 0.0, 0.0, 0.0]
    assert masks_from_scores(scores, 2)["a"].sum() == 0
    with pytest.raises(ValueError):
        masks_from_scores(scores, 2, sparsity=0.5)
    with pytest.raises(ConfigError, match="per-layer sparsities need scope 'layerwise'"):
        masks_from_scores(scores, sparsity=0.5, scope="global", layer_sparsity={"a": 0.1})
    with pytest.raises(ConfigError, match="unknown prune.scope 'tiled'"):
        masks_from_scores(scores, sparsity=0.5, scope="tiled")


def test_old_names_are_the_registered_scores():
    model = _model(seed=3)
    weights = {name: weight.detach() for name, weight in prunable_weights(model).items()}
    magnitude = SCORES.get("magnitude").compute(model, ScoreInputs())
    assert all(torch.equal(strategy_scores("magnitude", weights)[name], magnitude[name]) for name in weights)
    with pytest.raises(ConfigError, match=r"unknown prune.strategy 'snip'; allowed: magnitude$"):
        strategy_scores("snip", weights)
    with pytest.raises(ConfigError, match=r"unknown prune.channel_score 'magnitude'; allowed: l1, bn_scale$"):
        channel_scores("magnitude", model, model.state_dict(), [])


def test_a_task_without_losses_is_refused_before_training():
    task = SimpleNamespace(name="toy", prunable=prunable_weights, score_losses=None, ones_input=lambda data: None)
    with pytest.raises(ConfigError, match="variant snip_reinit needs the task's training loss, which task 'toy' "
                                          "does not supply; choose among synflow, magnitude_at_init"):
        check_task_supports(task, ["iterative_reset", "synflow", "snip_reinit"])
