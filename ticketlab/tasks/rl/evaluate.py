"""Evaluation of an agent: the mean undiscounted return of `rl.eval_episodes` whole episodes on fixed seeds."""

from __future__ import annotations

import numpy as np
from torch import nn

from ticketlab.errors import ConfigError
from ticketlab.seeds import derive_seed
from ticketlab.tasks.rl.rollout import evaluate_episodes
from ticketlab.tasks.rl.settings import RLConfig

EVAL_SEED_BASE = 20_231_207  # evaluation seeds are the same for every run: agents are compared on the same episodes


def evaluation_seeds(split: str, episodes: int) -> list[int]:
    """The episode seeds of split 'val', 'test' (or 'train', for completeness), fixed across runs."""
    if split not in ("train", "val", "test"):
        raise ConfigError(f"unknown split {split!r}; allowed: train, val, test")
    return [derive_seed(EVAL_SEED_BASE, split, episode) % (2**31) for episode in range(episodes)]


def episode_returns(model: nn.Module, data, split: str, rl: RLConfig | None = None) -> list[float]:
    """The undiscounted return of each evaluation episode of `split`, in the order of `evaluation_seeds(split,
    rl.eval_episodes)`, played in eval mode (greedy actions under `rl.deterministic_eval`)."""
    rl = rl or RLConfig()
    was_training = model.training
    model.eval()
    try:
        returns = evaluate_episodes(data.name, lambda observations: model(observations)[0],
                                    evaluation_seeds(split, rl.eval_episodes), rl.deterministic_eval,
                                    sample_seed=derive_seed(EVAL_SEED_BASE, split, "actions"), device=data.device)
    finally:
        model.train(was_training)
    return [float(value) for value in returns]


def mean_return(returns: list[float]) -> float:
    """The mean evaluation return of episode returns (what metrics.jsonl and result.json record beside them)."""
    return float(np.mean(returns))


def evaluate(model: nn.Module, data, split: str, rl: RLConfig | None = None) -> dict[str, float]:
    """{'return': mean return, 'loss': its negative} over the evaluation episodes of `split`, in eval mode."""
    mean = mean_return(episode_returns(model, data, split, rl))
    return {"loss": -mean, "return": mean}
