"""FLOP accounting shared by the speed benchmarks: the machine's fp32 matmul peak, measured in the same run, and
the FLOPs of training and evaluating a network counted the usual way (forward 2 x weights x examples, a training
step 6 x weights x examples; for conv nets each weight once per output position, as `ticketlab cost` counts). Achieved FLOP/s = counted FLOPs / wall time; as a share of the measured peak it says
how far a run is from the speed of the hardware.

The 6x convention counts work an implementation may skip (the first layer's input gradient), so a training
figure can exceed what the matmuls alone achieve; evaluation is forward only, 2x.
"""

from __future__ import annotations

import time

import torch
from torch import nn

from ticketlab.export.cost import model_cost


def matmul_peak(threads: int | None = None, clock=time.perf_counter) -> float:
    """Best fp32 FLOP/s of square matmuls (1024 and 2048) at `threads` threads (default: the current setting)."""
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    best = 0.0
    try:
        for size in (1024, 2048):
            a, b = torch.randn(size, size), torch.randn(size, size)
            a @ b
            for _ in range(3):
                start = clock()
                a @ b
                best = max(best, 2 * size**3 / (clock() - start))
    finally:
        torch.set_num_threads(previous)
    return best


def forward_flops(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Dense FLOPs of one example's forward pass (2 per multiply-accumulate of every Linear/Conv weight, as
    `ticketlab cost` counts them): 2 x weights for an MLP."""
    return model_cost(model, torch.zeros((1, *input_shape))).dense_flops


def training_flops(forward_per_example: float, examples: int) -> float:
    """FLOPs of training steps over `examples` examples in all: 3 x the forward's (6 x weights for an MLP)."""
    return 3.0 * forward_per_example * examples


def evaluation_flops(forward_per_example: float, examples: int) -> float:
    """FLOPs of forward passes over `examples` examples (2 x weights each for an MLP)."""
    return float(forward_per_example) * examples
