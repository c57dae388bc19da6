"""Batched, seeded image augmentation (pad + random crop + horizontal flip) and per-channel normalization.

Augmentation runs as a few tensor ops on the batch's own device; every random number comes from a
torch.Generator seeded with the step's seed, so a resumed run repeats the same crops and flips.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from ticketlab.data.splits import DataSplits
from ticketlab.errors import ConfigError


def pad_crop_flip(batch: torch.Tensor, seed: int, padding: int = 4, flip: bool = True) -> torch.Tensor:
    """Each image zero-padded by `padding` pixels, cropped back at a random offset, and mirrored with p = 1/2.

    `batch` is [N, C, H, W] or [N, H, W]. Zero padding is applied to the (normalized) inputs, so the border is
    the training mean colour. Offsets are uniform in 0..2*padding for rows and columns independently.
    """
    if batch.ndim not in (3, 4):
        raise ConfigError(f"data.augment needs image batches [N, C, H, W] or [N, H, W], got shape {tuple(batch.shape)}")
    squeeze = batch.ndim == 3
    images = batch.unsqueeze(1) if squeeze else batch
    count, channels, height, width = images.shape
    generator = torch.Generator(device=images.device).manual_seed(seed)
    row_offsets = torch.randint(0, 2 * padding + 1, (count,), generator=generator, device=images.device)
    col_offsets = torch.randint(0, 2 * padding + 1, (count,), generator=generator, device=images.device)
    columns = torch.arange(width, device=images.device)
    if flip:
        mirrored = torch.rand(count, generator=generator, device=images.device) < 0.5
        columns = torch.where(mirrored[:, None], width - 1 - columns, columns)  # [N, W]
    else:
        columns = columns.expand(count, width)
    rows = row_offsets[:, None] + torch.arange(height, device=images.device)  # [N, H]
    columns = col_offsets[:, None] + columns
    padded = F.pad(images, (padding, padding, padding, padding))
    # one gather over the flattened padded plane: position (r, c) of image n reads padded[n, :, rows[n, r], columns[n, c]]
    flat_index = (rows[:, :, None] * (width + 2 * padding) + columns[:, None, :]).view(count, 1, height * width)
    crops = padded.view(count, channels, -1).gather(2, flat_index.expand(count, channels, height * width))
    crops = crops.view(count, channels, height, width)
    return crops.squeeze(1) if squeeze else crops


def channel_mean_std(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and standard deviation of [N, C, H, W] images (float64 accumulation), shape [C]."""
    stats = [torch.std_mean(images[:, channel].double()) for channel in range(images.shape[1])]  # one channel at a time
    return torch.tensor([mean for _, mean in stats]).float(), torch.tensor([std for std, _ in stats]).float()


def normalize_channels(splits: DataSplits) -> DataSplits:
    """Subtract the training split's per-channel mean and divide by its std, in every split (in place)."""
    mean, std = channel_mean_std(splits.x_train)
    for tensor in (splits.x_train, splits.x_val, splits.x_test):
        tensor.sub_(mean[:, None, None]).div_(std[:, None, None])
    return splits
