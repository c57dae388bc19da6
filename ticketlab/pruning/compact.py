"""The compact network: a physically smaller network (fewer channels / neurons) computing the masked network's outputs.

A channel of a group (see `ticketlab.pruning.channels`) can be removed without changing any output when it is
*dead* (it outputs exactly zero: its BatchNorm scale and shift are zero, or, without a BatchNorm, its producer row
and bias are zero) or *unread* (the consumer's input columns for it are all zero). Structured tickets
(prune.unit channel) remove whole groups this way; an unstructured ticket loses only the channels that happen to
be dead or unread. Evaluation-mode outputs are the same up to float summation order. The compact export
(`ticketlab.export`) writes this network; channel-pruned jobs train as it (`ticketlab.lottery.compact_training`).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from ticketlab.pruning.channels import ChannelGroup, channel_groups


def removable_channels(model: nn.Module, groups: list[ChannelGroup]) -> dict[str, torch.Tensor]:
    """Bool [size] per group: True for channels whose removal leaves every output unchanged."""
    modules = dict(model.named_modules())
    removable = {}
    for group in groups:
        producer, consumer = modules[group.producer], modules[group.consumer]
        with torch.no_grad():
            if group.norm is not None:
                norm = modules[group.norm]
                dead = (norm.weight == 0) & (norm.bias == 0) if norm.affine else torch.zeros(group.size, dtype=torch.bool)
            else:
                dead = producer.weight.reshape(group.size, -1).abs().sum(dim=1) == 0
                if producer.bias is not None:
                    dead &= producer.bias == 0
            columns = consumer.weight.transpose(0, 1).reshape(group.size, group.repeat, -1)
            unread = columns.abs().sum(dim=(1, 2)) == 0
        removable[group.name] = dead | unread
    return removable


def compact_model(model: nn.Module, keep: dict[str, torch.Tensor] | None = None) -> nn.Module:
    """A smaller copy of `model` keeping, per channel group, the channels where `keep` is True (default: all
    that are not removable). At least one channel of a group stays, so the layers keep a valid shape."""
    groups = channel_groups(model)
    if keep is None:
        keep = {name: ~removed for name, removed in removable_channels(model, groups).items()}
    state = {name: value.detach().clone() for name, value in model.state_dict().items()}
    modules = dict(model.named_modules())
    for group in groups:
        index = torch.nonzero(keep[group.name]).flatten()
        if index.numel() == 0:
            index = torch.tensor([0])
        _select(state, group.producer, index, ("weight", "bias"), axis=0)
        if group.norm is not None:
            _select(state, group.norm, index, ("weight", "bias", "running_mean", "running_var"), axis=0)
        columns = (index[:, None] * group.repeat + torch.arange(group.repeat)).flatten()
        _select(state, group.consumer, columns, ("weight",), axis=1)
    smaller = copy.deepcopy(model)
    touched = {name for group in groups for name in (group.producer, group.norm, group.consumer) if name}
    for name in touched:
        _replace(smaller, name, _resized(modules[name], state, name).train(modules[name].training))
    smaller.load_state_dict(state)
    return smaller


def channel_counts(model: nn.Module) -> dict[str, int]:
    """Channels per group of a (compact) model: what `shrink_to` needs to rebuild its architecture."""
    modules = dict(model.named_modules())
    counts = {}
    for group in channel_groups(model):
        layer = modules[group.producer]
        counts[group.name] = layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels
    return counts


def shrink_to(model: nn.Module, counts: dict[str, int]) -> nn.Module:
    """`model`'s architecture with `counts` channels per group (the first ones; weights to be loaded after)."""
    return compact_model(model, {group.name: torch.arange(group.size) < counts[group.name]
                                 for group in channel_groups(model)})


def _select(state: dict, module_name: str, index: torch.Tensor, names: tuple[str, ...], axis: int) -> None:
    for name in names:
        key = f"{module_name}.{name}" if module_name else name
        if key in state and state[key] is not None and state[key].ndim > axis:
            state[key] = state[key].index_select(axis, index)


def _resized(module: nn.Module, state: dict, name: str) -> nn.Module:
    prefix = f"{name}." if name else ""
    if isinstance(module, nn.Linear):
        out_features, in_features = state[prefix + "weight"].shape
        return nn.Linear(in_features, out_features, bias=module.bias is not None)
    if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        weight = state[prefix + "weight"]
        if module.groups != 1:
            raise ValueError(f"compact export does not resize grouped convolution {name}")
        return type(module)(weight.shape[1], weight.shape[0], module.kernel_size, stride=module.stride,
                            padding=module.padding, dilation=module.dilation, bias=module.bias is not None,
                            padding_mode=module.padding_mode)
    if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)):
        size = state[prefix + "running_mean"].numel()
        return type(module)(size, eps=module.eps, momentum=module.momentum, affine=module.affine,
                            track_running_stats=module.track_running_stats)
    raise ValueError(f"compact export cannot resize {type(module).__name__} {name}")


def _replace(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)
