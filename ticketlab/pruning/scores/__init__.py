"""Pruning scores by name: each is a function (model, ScoreInputs) -> {tensor name: scores} (higher = keep) in the
`SCORES` registry; `score_mask` scores and keeps the top entries through the one shared
`ticketlab.pruning.masks.masks_from_scores`, re-scoring the masked network round by round for an iterative score.

Built in: magnitude, random (weights and channels), snip, grasp, synflow (weights), l1, bn_scale (channels). A new
score is one function and one line, e.g. in a test or a plug-in module:

    SCORES.register("taylor", Score(taylor, needs=("losses",)))
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from ticketlab.pruning.masks import Keep, Masks, exponential_keep_schedule, masks_from_scores
from ticketlab.pruning.scores.base import NEEDS, SCORES, UNITS, Score, ScoreInputs, get_score

# the built-in scores register themselves on import, in this order (the order error messages list them in)
from ticketlab.pruning.scores.weights import magnitude_scores, random_scores  # isort: skip
import ticketlab.pruning.scores.gradients  # noqa: F401  isort: skip
import ticketlab.pruning.scores.synflow  # noqa: F401  isort: skip
import ticketlab.pruning.scores.channels  # noqa: F401  isort: skip


def score_mask(score: str | Score, model: nn.Module, inputs: ScoreInputs, keep: Keep, rounds: int = 1,
               eligible: Masks | None = None, n_m: tuple[int, int] | None = None) -> Masks:
    """The mask that keeps `model`'s `keep` highest-scoring prunable weights (per tensor for a dict, in total for an
    int) under `score` (a registered name or a Score), among `eligible`.

    An iterative score (`Score.rounds_setting`, SynFlow) is scored `rounds` times: round k scores the network with
    the mask so far applied and keeps total * (keep / total) ** (k / rounds) of the weights
    (`exponential_keep_schedule`), ending with exactly `keep`; a one-shot score is scored once. `n_m`: every
    round's mask in that N:M pattern (`masks_from_scores`)."""
    entry = SCORES.get(score) if isinstance(score, str) else score
    if entry.rounds_setting is None:
        return masks_from_scores(entry.compute(model, inputs), keep, eligible=eligible, n_m=n_m)
    tensors = inputs.prunable(model)
    sizes = {name: tensor.numel() for name, tensor in tensors.items()}
    total = sizes if isinstance(keep, dict) else sum(sizes.values())
    masks = eligible or {name: torch.ones(tensor.shape, dtype=torch.float32) for name, tensor in tensors.items()}
    for round_keep in exponential_keep_schedule(total, keep, rounds):
        scores = entry.compute(model, replace(inputs, masks=masks))
        masks = masks_from_scores(scores, round_keep, eligible=masks, n_m=n_m)
    return masks


def strategy_scores(strategy: str, weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`prune.strategy`'s scores of `weights` (by name): a registered weight score that reads only the weights."""
    return get_score(strategy, "weight", "prune.strategy", supplied=()).compute(None, ScoreInputs(weights=weights))


__all__ = ["NEEDS", "SCORES", "UNITS", "Score", "ScoreInputs", "get_score", "magnitude_scores", "random_scores",
           "score_mask", "strategy_scores"]
