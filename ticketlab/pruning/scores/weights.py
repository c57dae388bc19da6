"""Scores read from the weights alone: magnitude (the lottery-ticket papers' criterion) and random (the controls)."""

from __future__ import annotations

import torch
from torch import nn

from ticketlab.pruning.scores.base import SCORES, Score, ScoreInputs


def magnitude(model: nn.Module | None, inputs: ScoreInputs) -> dict[str, torch.Tensor]:
    """|w|."""
    return {name: weight.detach().abs() for name, weight in inputs.scored_weights(model).items()}


def uniform_random(model: nn.Module | None, inputs: ScoreInputs) -> dict[str, torch.Tensor]:
    """Uniform random scores from `inputs.seed`, one generator drawn in tensor (or channel group) order: the top
    scores are a random mask of any chosen sparsity."""
    if inputs.groups is not None:
        shapes = {group.name: (group.size,) for group in inputs.groups}
    else:
        shapes = {name: weight.shape for name, weight in inputs.scored_weights(model).items()}
    generator = torch.Generator().manual_seed(inputs.seed)
    return {name: torch.rand(shape, generator=generator) for name, shape in shapes.items()}


SCORES.register("magnitude", Score(magnitude))
SCORES.register("random", Score(uniform_random, units=("weight", "channel"), needs=("seed",)))


def magnitude_scores(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """|w| of `weights` (by name)."""
    return magnitude(None, ScoreInputs(weights=weights))


def random_scores(weights: dict[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
    """Uniform random scores from `seed` with the shapes of `weights`: the top scores are a random mask."""
    return uniform_random(None, ScoreInputs(weights=weights, seed=seed))
