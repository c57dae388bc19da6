"""How far apart two trained networks are: the L2 distance between their weight vectors, normalized two ways.

Stability (Frankle et al. 2019) compares copies trained with different data orders, and a subnetwork with the
full network trained alongside it, over the prunable weights its mask keeps (see `stability`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Mapping

import torch

from ticketlab.errors import ConfigError


@dataclass(frozen=True)
class WeightDistance:
    """||a - b||_2 over the compared entries, normalized three ways.

    ``relative`` = ||a - b|| / ((||a|| + ||b||) / 2): 0 for identical vectors, at most 2 (triangle inequality).
    ``angle_degrees`` = arccos(<a, b> / (||a|| ||b||)) in degrees (nan if a vector is zero).
    """

    l2: float
    relative: float
    angle_degrees: float
    norm_a: float
    norm_b: float
    entries: int  # how many weights were compared


def weight_distance(
    state_a: Mapping[str, torch.Tensor],
    state_b: Mapping[str, torch.Tensor],
    *,
    names: Iterable[str] | None = None,
    masks: Mapping[str, torch.Tensor] | None = None,
) -> WeightDistance:
    """Distance between two state dicts over the tensors `names` (default: the masks' names, else every float
    tensor of `state_a`); tensors with a mask are compared only where the mask is 1. Sums are in float64.
    """
    if names is None:
        names = list(masks) if masks is not None else [n for n, v in state_a.items() if v.is_floating_point()]
    difference = norm_a = norm_b = dot = torch.zeros((), dtype=torch.float64)
    entries = 0
    for name in names:
        if name not in state_a or name not in state_b:
            raise ConfigError(f"tensor {name!r} is missing from one of the state dicts")
        a, b = state_a[name].detach().double().cpu(), state_b[name].detach().double().cpu()
        if a.shape != b.shape:
            raise ConfigError(f"{name} has shape {tuple(a.shape)} in one state, {tuple(b.shape)} in the other")
        if masks is not None and name in masks:
            keep = masks[name].cpu() > 0
            a, b = a[keep], b[keep]
        difference = difference + ((a - b) ** 2).sum()
        norm_a, norm_b, dot = norm_a + (a * a).sum(), norm_b + (b * b).sum(), dot + (a * b).sum()
        entries += a.numel()
    l2, size_a, size_b = math.sqrt(difference), math.sqrt(norm_a), math.sqrt(norm_b)
    mean_norm = (size_a + size_b) / 2.0
    relative = l2 / mean_norm if mean_norm > 0 else (0.0 if l2 == 0 else math.inf)
    if size_a > 0 and size_b > 0:
        cosine = max(-1.0, min(1.0, float(dot) / (size_a * size_b)))
        angle = 0.0 if l2 == 0 else math.degrees(math.acos(cosine))
    else:
        angle = math.nan
    return WeightDistance(l2, relative, angle, size_a, size_b, entries)
