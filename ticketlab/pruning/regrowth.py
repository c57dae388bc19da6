"""One drop-and-grow update of dynamic sparse training (SET, Mocanu et al. 2018; RigL, Evci et al. 2020), on
plain tensors: each layer drops the active weights with the smallest drop scores (|θ|) and activates as many
inactive ones with the largest grow scores (RigL: |dL/dθ| of the dense gradient; SET: uniform random numbers), so
its count of active weights never changes.

The grown entries are chosen among the weights inactive *before* the update, never among the ones it just dropped:
every grown weight was masked, so it is 0 with zeroed optimizer state when it comes back (the engine zeroed both
when it was pruned), and a dropped weight stays out for at least one interval. (RigL's reference code may regrow a
just-dropped weight, resetting it to 0; the counts are the same.) A layer grows at most as many weights as it has
inactive ones, so a dense layer never changes. Ties go to the earlier position (stable sorts), so a recomputation
in numpy gives the same sets.

Under an N:M pattern (at most N active of every M consecutive weights of a row) a weight grows only where its group
has room: the grown set is what a greedy pass over the candidates, best first, accepting one while its group holds
fewer than N, takes. With N <= M/2 (1:4, 2:4, 4:8) that always fills the count; with N > M/2 a group may run out
of inactive weights, and then as many of its just-dropped weights as it still has room for stay (best grow score
first), so the counts never change. Knows nothing of training.
"""

from __future__ import annotations

import math

import torch

from ticketlab.pruning.masks import Masks


def cosine_drop_fraction(step: int, end: int, drop_fraction: float) -> float:
    """RigL's update schedule: α_t = α / 2 · (1 + cos(π t / T_end)) before T_end, 0 from it on."""
    if step >= end:
        return 0.0
    return drop_fraction / 2 * (1 + math.cos(math.pi * step / end))


def update_count(active: int, inactive: int, fraction: float) -> int:
    """Weights one layer drops and grows: floor(fraction · active) (RigL's int cast), at most its inactive ones."""
    return min(int(fraction * active), inactive)


def drop_and_grow(masks: Masks, drop_scores: dict[str, torch.Tensor], grow_scores: dict[str, torch.Tensor],
                  fraction: float, n_m: tuple[int, int] | None = None) -> Masks:
    """The masks after one update: in each layer, `update_count` active entries with the smallest `drop_scores`
    become inactive and as many entries inactive before the update with the largest `grow_scores` become active
    (in the N:M pattern `n_m` when given: masks that keep it, keep it)."""
    return {name: _layer_update(mask, drop_scores[name], grow_scores[name], fraction, n_m)
            for name, mask in masks.items()}


def _layer_update(mask: torch.Tensor, drop_score: torch.Tensor, grow_score: torch.Tensor, fraction: float,
                  n_m: tuple[int, int] | None) -> torch.Tensor:
    active = mask.detach().flatten().cpu() > 0
    count = update_count(int(active.sum()), int((~active).sum()), fraction)
    new = active.clone()
    if count:
        drop = torch.where(active, drop_score.detach().flatten().cpu().to(torch.float64), math.inf)
        dropped = torch.zeros_like(active)
        dropped[torch.sort(drop, stable=True).indices[:count]] = True
        new &= ~dropped
        grow = -grow_score.detach().flatten().cpu().to(torch.float64)  # ascending = best first
        grown = _best(torch.where(active, math.inf, grow), new, count, n_m)
        new |= grown
        short = count - int(grown.sum())
        if short:  # N:M with N > M/2 only: groups out of inactive weights keep some of the dropped ones
            new |= _best(torch.where(dropped, grow, math.inf), new, short, n_m)
    return new.to(mask.dtype).view_as(mask).to(mask.device)


def _best(keys: torch.Tensor, active: torch.Tensor, count: int, n_m: tuple[int, int] | None) -> torch.Tensor:
    """The `count` candidates with the lowest keys (+inf: not a candidate), within each N:M group's room."""
    if n_m is not None:
        n, m = n_m
        groups = keys.view(-1, m)
        order = torch.sort(groups, dim=1, stable=True).indices
        rank = torch.empty_like(order).scatter_(1, order, torch.arange(m).expand_as(order).contiguous())
        room = n - active.view(-1, m).sum(dim=1, keepdim=True)
        keys = torch.where(rank < room, groups, math.inf).flatten()
    chosen = torch.zeros(keys.numel(), dtype=torch.bool)
    best = torch.sort(keys, stable=True).indices[:count]
    chosen[best[keys[best] < math.inf]] = True
    return chosen
