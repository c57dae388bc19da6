"""Fully connected networks: the MNIST-1D MLP and LeNet-300-100."""

from __future__ import annotations

import math

import torch
from torch import nn


class MLP(nn.Module):
    """Flatten, then Linear-ReLU blocks, then a Linear output layer (no softmax)."""

    def __init__(self, input_size: int, hidden: tuple[int, ...], num_classes: int):
        super().__init__()
        widths = [input_size, *hidden]
        blocks: list[nn.Module] = [nn.Flatten()]
        for width_in, width_out in zip(widths[:-1], widths[1:]):
            blocks += [nn.Linear(width_in, width_out), nn.ReLU()]
        blocks.append(nn.Linear(widths[-1], num_classes))
        self.layers = nn.Sequential(*blocks)

    def output_weights(self) -> tuple[nn.Parameter, ...]:
        """The output layer's weight (`prune.output_rate` applies to it)."""
        return (self.layers[-1].weight,)

    def as_sequential(self) -> nn.Sequential:
        """The nn.Sequential that is this model's whole forward: populations stack it layer by layer."""
        return self.layers

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.layers(inputs)


def mlp_input_size(input_shape: tuple[int, ...]) -> int:
    return math.prod(input_shape)
