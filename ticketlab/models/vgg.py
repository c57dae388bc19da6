"""CIFAR VGG-11/13/16/19: stacks of 3x3 conv-BatchNorm-ReLU with max-pooling, global average pool, one FC layer."""

from __future__ import annotations

import torch
from torch import nn

from ticketlab.errors import ConfigError
from ticketlab.models.conv import image_shape

POOL = "M"
# Channels per conv in units of the first stage's width ("M": 2x2 max-pool); VGG-19's last stage has no pool.
VGG_PLANS: dict[int, tuple] = {
    11: (1, POOL, 2, POOL, 4, 4, POOL, 8, 8, POOL, 8, 8),
    13: (1, 1, POOL, 2, 2, POOL, 4, 4, POOL, 8, 8, POOL, 8, 8),
    16: (1, 1, POOL, 2, 2, POOL, 4, 4, 4, POOL, 8, 8, 8, POOL, 8, 8, 8),
    19: (1, 1, POOL, 2, 2, POOL, 4, 4, 4, 4, POOL, 8, 8, 8, 8, POOL, 8, 8, 8, 8),
}


class VGG(nn.Module):
    """VGG for small images: `width` is the first stage's channels (standard: 64, last stage 8 * width).

    Convs have no bias (BatchNorm follows); the classifier is a single Linear layer after global average pooling,
    so 28x28 inputs (MNIST, [N, H, W] accepted) work as well as 32x32.
    """

    # forward() only composes the submodules, per example: populations run it under vmap over stacked weights
    vectorizable_forward = True

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, depth: int = 19, width: int = 64):
        super().__init__()
        if depth not in VGG_PLANS:
            raise ConfigError(f"VGG depth {depth} is not one of {', '.join(map(str, VGG_PLANS))}")
        channels = image_shape(input_shape)[0]
        layers: list[nn.Module] = []
        for entry in VGG_PLANS[depth]:
            if entry == POOL:
                layers.append(nn.MaxPool2d(2))
                continue
            layers += [nn.Conv2d(channels, entry * width, 3, padding=1, bias=False),
                       nn.BatchNorm2d(entry * width), nn.ReLU()]
            channels = entry * width
        self.features = nn.Sequential(*layers)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(channels, num_classes)

    def output_weights(self) -> tuple[nn.Parameter, ...]:
        """The output layer's weight (`prune.output_rate` applies to it)."""
        return (self.fc.weight,)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        if inputs.ndim == 3:
            inputs = inputs.unsqueeze(1)
        return self.fc(self.pool(self.features(inputs)))
