"""Pruning: prunable-tensor selection, the scores registry (`scores`), and masks. Knows nothing of training."""

from ticketlab.pruning.masks import (
    Keep,
    Masks,
    check_masks,
    full_masks,
    keep_top,
    masks_from_scores,
    next_keep_counts,
    output_layer_name,
    output_weight_names,
    prunable_weights,
    remaining_counts,
    remaining_percent,
    shuffle_within_layers,
)
from ticketlab.pruning.scores import (
    SCORES,
    Score,
    ScoreInputs,
    magnitude_scores,
    random_scores,
    score_mask,
    strategy_scores,
)

__all__ = [
    "Keep",
    "Masks",
    "SCORES",
    "Score",
    "ScoreInputs",
    "check_masks",
    "full_masks",
    "keep_top",
    "magnitude_scores",
    "masks_from_scores",
    "next_keep_counts",
    "output_layer_name",
    "output_weight_names",
    "prunable_weights",
    "random_scores",
    "remaining_counts",
    "remaining_percent",
    "score_mask",
    "shuffle_within_layers",
    "strategy_scores",
]
