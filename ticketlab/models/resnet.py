"""CIFAR ResNets (He et al. 2016, Sec. 4.2): depth 6n+2, three stages of n basic blocks, projection shortcuts.

ResNet-20 with width 16 is the network the 2018-19 lottery-ticket papers call "ResNet-18" (~0.27M parameters).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ticketlab.errors import ConfigError
from ticketlab.models.conv import image_shape


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN plus a shortcut (1x1 conv + BN where the shape changes), then ReLU."""

    # forward() only composes the submodules, per example: populations run it under vmap over stacked weights
    vectorizable_forward = True

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm2d(out_channels)
            )

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        hidden = F.relu(self.bn1(self.conv1(inputs)))
        return F.relu(self.bn2(self.conv2(hidden)) + self.shortcut(inputs))


class ResNet(nn.Module):
    """Stem conv (width channels), stages of width / 2*width / 4*width channels (stride 2 entering stages 2 and 3),
    global average pool, Linear output. Accepts [N, C, H, W] or [N, H, W]."""

    # forward() only composes the submodules, per example: populations run it under vmap over stacked weights
    vectorizable_forward = True

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, depth: int = 20, width: int = 16):
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ConfigError(f"CIFAR ResNet depth {depth} must be 6n+2 with n >= 1 (20, 32, 44, 56, 110)")
        blocks_per_stage = (depth - 2) // 6
        in_channels = image_shape(input_shape)[0]
        self.conv = nn.Conv2d(in_channels, width, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(width)
        blocks: list[nn.Module] = []
        channels = width
        for stage in range(3):
            out_channels = width * 2**stage
            for index in range(blocks_per_stage):
                stride = 2 if stage > 0 and index == 0 else 1
                blocks.append(BasicBlock(channels, out_channels, stride))
                channels = out_channels
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(channels, num_classes)

    def output_weights(self) -> tuple[nn.Parameter, ...]:
        """The output layer's weight (`prune.output_rate` applies to it)."""
        return (self.fc.weight,)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        if inputs.ndim == 3:
            inputs = inputs.unsqueeze(1)
        hidden = self.blocks(F.relu(self.bn(self.conv(inputs))))
        return self.fc(hidden.mean(dim=(2, 3)))
