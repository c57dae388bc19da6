"""Pruning: prunable-tensor selection, scores, and masks. Knows nothing of training."""

from ticketlab.pruning.masks import (
    Masks,
    check_masks,
    full_masks,
    keep_top,
    next_keep_counts,
    output_layer_name,
    output_weight_names,
    prunable_weights,
    remaining_counts,
    remaining_percent,
)
from ticketlab.pruning.strategies import magnitude_scores, random_scores, strategy_scores

__all__ = [
    "Masks",
    "check_masks",
    "full_masks",
    "keep_top",
    "magnitude_scores",
    "next_keep_counts",
    "output_layer_name",
    "output_weight_names",
    "prunable_weights",
    "random_scores",
    "remaining_counts",
    "remaining_percent",
    "strategy_scores",
]
