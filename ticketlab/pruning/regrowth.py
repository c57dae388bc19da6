"""One drop-and-grow update of dynamic sparse training (SET, Mocanu et al. 2018; RigL, Evci et al. 2020), on
plain tensors: each layer drops the active weights with the smallest drop scores (|θ|) and activates as many
inactive ones with the largest grow scores (RigL: |dL/dθ| of the dense gradient; SET: uniform random numbers), so
its count of active weights never changes.

The grown entries are chosen among the weights inactive *before* the update, never among the ones it just dropped:
every grown weight was masked, so it is 0 with zeroed optimizer state when it comes back (the engine zeroed both
when it was pruned), and a dropped weight stays out for at least one interval. (RigL's reference code may regrow a
just-dropped weight, resetting it to 0; the counts are the same.) A layer grows at most as many weights as it has
inactive ones, so a dense layer never changes. Ties go to the earlier position (stable sorts), so a recomputation
in numpy gives the same sets. Knows nothing of training.
"""

from __future__ import annotations

import math

import torch

from ticketlab.pruning.masks import Masks


def cosine_drop_fraction(step: int, end: int, drop_fraction: float) -> float:
    """RigL's update schedule: α_t = α / 2 · (1 + cos(π t / T_end)) for t <= T_end, 0 after."""
    if step > end:
        return 0.0
    return drop_fraction / 2 * (1 + math.cos(math.pi * step / end))


def update_count(active: int, inactive: int, fraction: float) -> int:
    """Weights one layer drops and grows: floor(fraction · active) (RigL's int cast), at most its inactive ones."""
    return min(int(fraction * active), inactive)


def drop_and_grow(masks: Masks, drop_scores: dict[str, torch.Tensor], grow_scores: dict[str, torch.Tensor],
                  fraction: float) -> Masks:
    """The masks after one update: in each layer, `update_count` active entries with the smallest `drop_scores`
    become inactive and as many entries inactive before the update with the largest `grow_scores` become active."""
    return {name: _layer_update(mask, drop_scores[name], grow_scores[name], fraction) for name, mask in masks.items()}


def _layer_update(mask: torch.Tensor, drop_score: torch.Tensor, grow_score: torch.Tensor,
                  fraction: float) -> torch.Tensor:
    active = mask.detach().flatten().cpu() > 0
    count = update_count(int(active.sum()), int((~active).sum()), fraction)
    new = active.clone()
    if count:
        drop = torch.where(active, drop_score.detach().flatten().cpu().to(torch.float64), math.inf)
        new[torch.sort(drop, stable=True).indices[:count]] = False
        grow = torch.where(active, math.inf, -grow_score.detach().flatten().cpu().to(torch.float64))
        new[torch.sort(grow, stable=True).indices[:count]] = True
    return new.to(mask.dtype).view_as(mask).to(mask.device)
