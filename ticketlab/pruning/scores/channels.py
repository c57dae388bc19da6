"""Channel scores (prune.unit 'channel'): one score per channel of each channel group
(`ticketlab.pruning.channel_groups.ChannelGroup`), keyed by the group's name, read from a state dict.

- 'l1': the L1 norm of each channel's producer weights (Li et al. 2017).
- 'bn_scale': the |scale| of the BatchNorm after it (network slimming, Liu et al. 2017; we score by the scales but
  do not add their L1 penalty to the training loss).
"""

from __future__ import annotations

import torch
from torch import nn

from ticketlab.errors import ConfigError
from ticketlab.pruning.channel_groups import channel_groups, param_name
from ticketlab.pruning.scores.base import SCORES, Score, ScoreInputs


def _groups_and_state(model: nn.Module | None, inputs: ScoreInputs) -> tuple[list, dict[str, torch.Tensor]]:
    groups = inputs.groups
    if groups is None:
        groups = channel_groups(model)
    return groups, inputs.weights if inputs.weights is not None else model.state_dict()



def channel_l1(model: nn.Module | None, inputs: ScoreInputs) -> dict[str, torch.Tensor]:
    """L1 norm of each channel's producer weights."""
    groups, state = _groups_and_state(model, inputs)
    scores = {}
    for group in groups:
        weight = state[param_name(group.producer, "weight")].detach().float()
        scores[group.name] = weight.reshape(weight.shape[0], -1).abs().sum(dim=1)
    return scores


def bn_scale(model: nn.Module | None, inputs: ScoreInputs) -> dict[str, torch.Tensor]:
    """|γ| of the BatchNorm after each channel group; ConfigError for a group without one."""
    groups, state = _groups_and_state(model, inputs)
    scores = {}
    for group in groups:
        if group.norm is None:
            raise ConfigError(f"prune.channel_score 'bn_scale' needs a BatchNorm after {group.producer}; "
                              "this model has none there (use 'l1')")
        scores[group.name] = state[param_name(group.norm, "weight")].detach().float().abs()
    return scores


SCORES.register("l1", Score(channel_l1, units=("channel",)))
SCORES.register("bn_scale", Score(bn_scale, units=("channel",)))
