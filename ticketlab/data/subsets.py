"""Derived datasets: a subset of the classes (relabelled 0..k-1) and images resized or re-channelled, so tickets
can move between tasks whose input shapes differ (Morcos et al., 2019)."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from ticketlab.data.splits import DataSplits
from ticketlab.errors import ConfigError

_TENSORS = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")


def select_classes(splits: DataSplits, classes: tuple[int, ...], dataset: str = "the dataset") -> DataSplits:
    """Keep only the examples of `classes` in every split, relabelled by position: `classes[i]` becomes i.

    ConfigError naming the class if one is outside 0..num_classes-1 or leaves a split empty."""
    for index in classes:
        if not 0 <= index < splits.num_classes:
            raise ConfigError(f"data.classes {index} is outside the classes 0-{splits.num_classes - 1} of {dataset}")
    relabel = torch.full((splits.num_classes,), -1, dtype=torch.int64)
    relabel[torch.tensor(classes)] = torch.arange(len(classes))
    parts = {}
    for split in ("train", "val", "test"):
        inputs, labels = getattr(splits, f"x_{split}"), getattr(splits, f"y_{split}")
        new_labels = relabel.to(labels.device)[labels]
        keep = new_labels >= 0
        if not bool(keep.any()):
            raise ConfigError(f"data.classes {','.join(map(str, classes))} leaves the {split} split of {dataset} "
                              "empty; raise data.validation_size / data.train_size or choose other classes")
        parts[f"x_{split}"], parts[f"y_{split}"] = inputs[keep].contiguous(), new_labels[keep].contiguous()
    return DataSplits(**parts, num_classes=len(classes))


def reshape_images(splits: DataSplits, image_size: int | None, channels: int | None) -> DataSplits:
    """Images ([N, C, H, W], or [N, H, W] taken as one channel) resized to image_size x image_size (bilinear,
    antialiased when shrinking) and converted to `channels` (3 -> 1: the channel mean; 1 -> 3: repeated).

    Inputs that are not images (MNIST-1D, [N, L]) are a ConfigError naming the setting."""
    if image_size is None and channels is None:
        return splits
    shape = splits.input_shape
    if len(shape) not in (2, 3):
        setting = "data.image_size" if image_size is not None else "data.channels"
        raise ConfigError(f"{setting} applies to image data; these inputs have shape {list(shape)}")
    parts = {}
    for name in _TENSORS:
        value = getattr(splits, name)
        if name.startswith("x_"):
            value = _reshape(value, image_size, channels)
        parts[name] = value
    return DataSplits(**parts, num_classes=splits.num_classes)


def _reshape(images: torch.Tensor, image_size: int | None, channels: int | None) -> torch.Tensor:
    squeeze = images.dim() == 3  # [N, H, W] stays without a channel axis when it keeps one channel
    batch = images.unsqueeze(1) if squeeze else images
    if channels is not None and channels != batch.shape[1]:
        if channels == 1:
            batch = batch.mean(dim=1, keepdim=True)
        elif batch.shape[1] == 1:
            batch = batch.expand(-1, channels, -1, -1)
        else:
            raise ConfigError(f"data.channels {channels} cannot be made from {batch.shape[1]}-channel images")
    if image_size is not None and tuple(batch.shape[2:]) != (image_size, image_size):
        shrinking = image_size < max(batch.shape[2:])
        resized = [F.interpolate(batch[start:start + 4096], size=(image_size, image_size), mode="bilinear",
                                 align_corners=False, antialias=shrinking) for start in range(0, len(batch), 4096)]
        batch = torch.cat(resized) if resized else batch[:, :, :image_size, :image_size]
    if squeeze and batch.shape[1] == 1:
        batch = batch.squeeze(1)
    return batch.contiguous()
