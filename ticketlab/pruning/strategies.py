"""Pruning strategies: each only computes scores (higher = more important); masks.keep_top decides."""

from __future__ import annotations

import torch

from ticketlab.errors import ConfigError


def magnitude_scores(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """|w|: the lottery-ticket papers' criterion."""
    return {name: weight.detach().abs() for name, weight in weights.items()}


def random_scores(weights: dict[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
    """Uniform random scores from `seed`: keep_top on them gives a random mask of any chosen sparsity."""
    generator = torch.Generator().manual_seed(seed)
    return {name: torch.rand(weight.shape, generator=generator) for name, weight in weights.items()}


STRATEGIES = {"magnitude": magnitude_scores}


def strategy_scores(strategy: str, weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if strategy not in STRATEGIES:
        raise ConfigError(f"unknown prune.strategy {strategy!r}; allowed: {', '.join(STRATEGIES)}")
    return STRATEGIES[strategy](weights)
