"""Channel groups: the prunable sets of channels of a network, read from its module structure (no graph tracing).

A *channel group* is one layer's output channels and every tensor entry that belongs to them: the producing
layer's weight rows and bias, the BatchNorm after it and the consuming layer's input columns. Both the channel
scores (`ticketlab.pruning.scores.channels`) and channel pruning (`ticketlab.pruning.channels`) read them, so they
live below both.

Groups are derived from the module structure, not traced through a graph library: chains of Linear/Conv layers
(with optional BatchNorm) as in the MLPs, Conv-2/4/6 and VGG, and ResNets' basic blocks, where only the block's
inner channels (conv1's outputs, bn1, conv2's inputs) are pruned. The channels of the residual stream are shared
by the stem, every block's conv2 and shortcut of a stage and the next stage's inputs; keeping them whole is the
choice of Li et al. (2017), "Pruning Filters for Efficient ConvNets", for CIFAR ResNets, and removes nothing that
a residual addition would need.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ticketlab.errors import ConfigError

_LAYER_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
_NORM_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


@dataclass(frozen=True)
class ChannelGroup:
    """The channels of one layer's output: `producer` writes them (axis 0), `norm` (optional) normalizes them,
    `consumer` reads them (axis 1, `repeat` consecutive input features per channel)."""

    producer: str  # module name, e.g. "features.0"
    size: int  # channels in the dense network
    norm: str | None
    consumer: str
    repeat: int

    @property
    def name(self) -> str:
        """The group's key in plans and layer_rates: the producer's weight name."""
        return f"{self.producer}.weight" if self.producer else "weight"


def param_name(module_name: str, name: str) -> str:
    return f"{module_name}.{name}" if module_name else name


def channel_groups(model: nn.Module) -> list[ChannelGroup]:
    """The prunable channel groups of `model`, in module order; ConfigError for structures we cannot prune."""
    from ticketlab.models.resnet import BasicBlock, ResNet

    if isinstance(model, ResNet):
        groups = []
        for name, module in model.named_modules():
            if isinstance(module, BasicBlock):
                groups.append(ChannelGroup(param_name(name, "conv1"), module.conv1.out_channels, param_name(name, "bn1"),
                                           param_name(name, "conv2"), 1))
        return groups
    from ticketlab.models.conv import ConvNet
    from ticketlab.models.mlp import MLP
    from ticketlab.models.vgg import VGG

    if not isinstance(model, (MLP, ConvNet, VGG, nn.Sequential)):
        raise ConfigError(f"prune.unit 'channel' supports the built-in MLPs, conv, VGG and ResNet models and "
                          f"nn.Sequential chains, not {type(model).__name__}")
    layers = [(name, module) for name, module in model.named_modules() if isinstance(module, _LAYER_TYPES)]
    norms = [(name, module) for name, module in model.named_modules() if isinstance(module, _NORM_TYPES)]
    order = {name: index for index, (name, _) in enumerate(model.named_modules())}
    groups = []
    for (name, layer), (next_name, next_layer) in zip(layers[:-1], layers[1:]):
        channels = layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels
        fan_in = next_layer.in_features if isinstance(next_layer, nn.Linear) else next_layer.in_channels
        if fan_in % channels or (not isinstance(next_layer, nn.Linear) and fan_in != channels):
            raise ConfigError(f"prune.unit 'channel': {next_name} reads {fan_in} features, not a multiple of the "
                              f"{channels} channels of {name}")
        between = [norm_name for norm_name, norm in norms if order[name] < order[norm_name] < order[next_name]]
        groups.append(ChannelGroup(name, channels, between[0] if between else None, next_name, fan_in // channels))
    return groups
