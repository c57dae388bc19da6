"""Structured pruning: whole output channels (conv filters, hidden neurons) as the unit.

A *channel group* is one prunable set of channels and every tensor entry that belongs to a channel of it: the
producing layer's weight rows and bias, the BatchNorm after it (scale, shift, running statistics) and the
consuming layer's input columns (a Linear after a Flatten reads `repeat` consecutive features per channel).
Masks stay weight-shaped (the training loop, the populations and the run directory need nothing new); a
channel mask zeroes the whole group, and also masks the producer's bias and the BatchNorm scale and shift of a
removed channel, so the channel outputs exactly zero and a physically smaller network computes the same
function (see `ticketlab.pruning.compact`).

The groups themselves (which layers, which ResNet channels) are `ticketlab.pruning.channel_groups`.
"""

from __future__ import annotations

import torch
from torch import nn

from ticketlab.errors import ConfigError
from ticketlab.pruning.channel_groups import ChannelGroup, channel_groups, param_name  # noqa: F401 (channel_groups: re-exported)
from ticketlab.pruning.masks import masks_from_scores, next_keep_counts
from ticketlab.pruning.scores import SCORES, ScoreInputs, get_score



def group_tensors(model: nn.Module, group: ChannelGroup) -> list[str]:
    """Parameter names masked along axis 0 with the group's channels: producer weight and bias, norm scale/shift."""
    modules = dict(model.named_modules())
    names = [param_name(group.producer, "weight")]
    if modules[group.producer].bias is not None:
        names.append(param_name(group.producer, "bias"))
    if group.norm is not None and modules[group.norm].affine:
        names += [param_name(group.norm, "weight"), param_name(group.norm, "bias")]
    return names


def alive_channels(masks: dict[str, torch.Tensor], group: ChannelGroup) -> torch.Tensor:
    """Bool [size]: channels with any unpruned weight in the producer's rows."""
    weight_mask = masks[param_name(group.producer, "weight")]
    return weight_mask.reshape(weight_mask.shape[0], -1).sum(dim=1) > 0


def channel_scores(
    score: str, model: nn.Module, state: dict[str, torch.Tensor], groups: list[ChannelGroup]
) -> dict[str, torch.Tensor]:
    """Per-group [size] scores (higher = keep) from a state dict, by a registered channel score's name
    (`ticketlab.pruning.scores`: 'l1', 'bn_scale')."""
    entry = get_score(score, "channel", "prune.channel_score", supplied=())
    return entry.compute(model, ScoreInputs(weights=state, groups=groups))


def random_channel_scores(groups: list[ChannelGroup], seed: int) -> dict[str, torch.Tensor]:
    """Uniform random per-group [size] scores from `seed` (the random-pruning control)."""
    return SCORES.get("random").compute(None, ScoreInputs(groups=groups, seed=seed))


def keep_channels(
    scores: dict[str, torch.Tensor], keep: dict[str, int] | int, eligible: dict[str, torch.Tensor] | None = None
) -> dict[str, torch.Tensor]:
    """Bool [size] per group: the highest-scoring eligible channels, `keep` per group (dict) or in total (int).

    Globally at least one channel of every group survives (an empty layer would disconnect the network). Ties go
    as in `masks.keep_top`: the lowest scores are removed first, by position.
    """
    kept = masks_from_scores(scores, keep, eligible=eligible, min_per_tensor=0 if isinstance(keep, dict) else 1)
    return {name: mask.bool() for name, mask in kept.items()}


def channel_masks(
    model: nn.Module, groups: list[ChannelGroup], kept: dict[str, torch.Tensor], weights: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Weight-shaped 0/1 masks for the prunable `weights` plus the biases and BatchNorm scale/shift of the groups,
    zero on every entry of a removed channel (producer rows, norm entries, consumer input columns)."""
    parameters = dict(model.named_parameters())
    masks = {name: torch.ones_like(weight, dtype=torch.float32) for name, weight in weights.items()}
    for group in groups:
        removed = ~kept[group.name]
        for name in group_tensors(model, group):
            mask = masks.setdefault(name, torch.ones_like(parameters[name], dtype=torch.float32))
            mask[removed] = 0.0
        consumer = param_name(group.consumer, "weight")
        columns = removed.repeat_interleave(group.repeat)
        masks[consumer][:, columns] = 0.0
    return masks


def channel_keep_plan(groups: list[ChannelGroup], rates: dict[str, float], scope: str, rate: float,
                      levels: int, target_percent: float | None) -> list:
    """Channels kept per level: per-group dicts (layerwise, each group losing round(rate * remaining) a round) or
    totals (global); index 0 is dense. Stops after `levels` rounds, at the target percent of channels, or when a
    round would remove nothing."""
    counts = {group.name: group.size for group in groups}
    total = sum(counts.values())
    if not total:
        raise ConfigError("prune.unit 'channel': the model has no prunable channel groups")
    plan: list = [dict(counts) if scope == "layerwise" else total]
    max_levels = levels if target_percent is None else 10_000

    def size(entry) -> int:
        return sum(entry.values()) if isinstance(entry, dict) else entry

    while len(plan) - 1 < max_levels:
        if target_percent is not None and 100.0 * size(plan[-1]) / total <= target_percent:
            break
        if scope == "layerwise":
            plan.append(next_keep_counts(plan[-1], {name: rates.get(name, rate) for name in plan[-1]}, scope))
        else:
            plan.append(max(len(counts), next_keep_counts({"all": plan[-1]}, {"all": rate}, scope)))
        if size(plan[-1]) == size(plan[-2]):
            plan.pop()
            break
    return plan
