"""Conv-2/4/6 of the lottery-ticket paper: pairs of 3x3 convs with max-pooling, then FC 256-256 and the output.

Dropout here is `SeededDropout`: its masks come from a per-step seed (see `set_noise_seed`), not from the
global RNG, so a run resumed from a checkpoint draws the same masks as the uninterrupted run.
"""

from __future__ import annotations

import torch
from torch import nn

from ticketlab.errors import ConfigError
from ticketlab.seeds import derive_seed


class SeededDropout(nn.Module):
    """Inverted dropout whose mask is drawn from `noise_seed` (set before each training step) and this layer's index.

    Without a seed (e.g. a model trained outside ticketlab) it falls back to the global RNG, like nn.Dropout.
    """

    def __init__(self, p: float, index: int):
        super().__init__()
        self.p, self.index = float(p), index
        self.noise_seed: int | None = None
        # (rank, ranks) under data parallelism: draw the global batch's mask and keep this rank's rows, so the
        # shards together drop exactly what one process dropping from the whole batch would
        self.batch_shard: tuple[int, int] = (0, 1)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return inputs
        if self.noise_seed is None:
            return nn.functional.dropout(inputs, self.p, training=True)
        generator = torch.Generator(device=inputs.device).manual_seed(derive_seed(self.noise_seed, self.index))
        rank, ranks = self.batch_shard
        rows = inputs.shape[0]
        noise = torch.rand((rows * ranks, *inputs.shape[1:]), generator=generator, device=inputs.device)
        keep = noise[rank * rows : (rank + 1) * rows] >= self.p
        return inputs * keep / (1.0 - self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}, index={self.index}"


def set_noise_seed(model: nn.Module, seed: int | None) -> bool:
    """Give every SeededDropout in `model` the seed of the coming training step; True if there was one."""
    found = False
    for module in model.modules():
        if isinstance(module, SeededDropout):
            module.noise_seed = seed
            found = True
    return found


class ConvNet(nn.Module):
    """Blocks of two 3x3 'same' convs (ReLU) and a 2x2 max-pool; channels double every block; then FC layers.

    `width` is the first block's channels (paper: 64) and the FC widths are 4 * width (paper: 256).
    Inputs are [N, C, H, W] or [N, H, W] (a channel axis is added, so MNIST tensors work unchanged).
    """

    # forward() only composes the submodules, per example: populations run it under vmap over stacked weights
    vectorizable_forward = True

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, blocks: int, width: int = 64,
                 dropout: float = 0.0):
        super().__init__()
        channels, height, side_w = image_shape(input_shape)
        layers: list[nn.Module] = []
        for block in range(blocks):
            out_channels = width * 2**block
            layers += [nn.Conv2d(channels, out_channels, 3, padding=1), nn.ReLU(),
                       nn.Conv2d(out_channels, out_channels, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
            channels, height, side_w = out_channels, height // 2, side_w // 2
        if height < 1 or side_w < 1:
            raise ConfigError(f"input {tuple(input_shape)} is too small for {blocks} pooling blocks")
        self.features = nn.Sequential(*layers)
        hidden = 4 * width
        classifier: list[nn.Module] = [nn.Flatten()]
        fan_in = channels * height * side_w
        for index in range(2):
            classifier += [nn.Linear(fan_in, hidden), nn.ReLU()]
            if dropout > 0:
                classifier.append(SeededDropout(dropout, index))
            fan_in = hidden
        classifier.append(nn.Linear(fan_in, num_classes))
        self.classifier = nn.Sequential(*classifier)

    def output_weights(self) -> tuple[nn.Parameter, ...]:
        """The output layer's weight (`prune.output_rate` applies to it)."""
        return (self.classifier[-1].weight,)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        if inputs.ndim == 3:
            inputs = inputs.unsqueeze(1)
        return self.classifier(self.features(inputs))


def image_shape(input_shape: tuple[int, ...]) -> tuple[int, int, int]:
    """(channels, height, width) of an image dataset's per-example shape (H, W) or (C, H, W)."""
    if len(input_shape) == 2:
        return 1, input_shape[0], input_shape[1]
    if len(input_shape) == 3:
        return tuple(input_shape)  # type: ignore[return-value]
    raise ConfigError(f"convolutional models need images of shape (H, W) or (C, H, W), got {tuple(input_shape)}")
