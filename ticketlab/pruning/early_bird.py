"""Early-bird tickets (You et al. 2020): masks drawn during dense training stop changing early, and the ticket can
be drawn then. This module holds the task-agnostic parts: channel masks by BatchNorm scale, the normalized
Hamming distance between masks, and the detector over a window of recent masks."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import torch
from torch import nn

from ticketlab.pruning.masks import Masks


def batchnorm_scales(model: nn.Module) -> dict[str, torch.Tensor]:
    """|γ| of every BatchNorm layer with an affine scale, keyed by the module name (network slimming's channel
    importance, which You et al. prune by)."""
    return {name: module.weight.detach().abs().cpu() for name, module in model.named_modules()
            if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.weight is not None}


def channel_mask(scales: dict[str, torch.Tensor], keep_fraction: float) -> Masks:
    """Keep the round(keep_fraction * channels) channels with the largest |γ| over all BatchNorm layers together
    (a global threshold, as in network slimming); ties broken by position."""
    from ticketlab.pruning.masks import keep_top

    total = sum(scale.numel() for scale in scales.values())
    return keep_top(scales, round(keep_fraction * total))


def mask_distance(first: Masks, second: Masks) -> float:
    """Normalized Hamming distance: the fraction of mask entries (over all tensors) that differ, in [0, 1]."""
    differing = sum(int((first[name] != second[name]).sum()) for name in first)
    return differing / sum(mask.numel() for mask in first.values())


@dataclass
class EarlyBirdDetector:
    """Keeps the last `window` masks; `observe` returns the largest distance between the newest mask and the
    others (None until the window is full) and `detected` turns true the first time it is below `threshold`."""

    window: int = 5
    threshold: float = 0.1
    recent: deque = field(default_factory=deque)
    detected: bool = False

    def observe(self, mask: Masks) -> float | None:
        self.recent.append({name: value.bool() for name, value in mask.items()})
        if len(self.recent) > self.window:
            self.recent.popleft()
        if len(self.recent) < self.window:
            return None
        newest = self.recent[-1]
        distance = max(mask_distance(newest, older) for older in list(self.recent)[:-1])
        if distance < self.threshold:
            self.detected = True
        return distance
