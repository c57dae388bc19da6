"""In-memory train/validation/test tensors: the form every dataset takes inside ticketlab."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ticketlab.errors import ConfigError, DataError


@dataclass(frozen=True)
class DataSplits:
    """Inputs (float32, [N, ...]) and integer labels (int64, [N]) for each split, held in memory."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    def to(self, device: str | torch.device) -> "DataSplits":
        moved = {name: getattr(self, name).to(device) for name in _TENSOR_FIELDS}
        return DataSplits(**moved, num_classes=self.num_classes)


_TENSOR_FIELDS = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")


def make_splits(
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_test: torch.Tensor,
    y_test: torch.Tensor,
    *,
    validation_size: int,
    train_size: int | None = None,
    num_classes: int | None = None,
    divide_by: float | None = None,
) -> DataSplits:
    """Hold the last `validation_size` training examples out for validation (fixed, not shuffled).

    Use your own tensors with this to run an experiment on any data (labels 0..C-1). A `validation_size` or
    `train_size` larger than the data is a ConfigError naming the value and the size. Inputs become float32
    after the splits are cut (divided by `divide_by` when given, e.g. 255 for uint8 pixels), so only the rows
    kept are ever converted, and a `train_size` subset is copied out so the full array can be freed.
    """
    y_train, y_test = torch.as_tensor(y_train).long(), torch.as_tensor(y_test).long()
    if len(x_train) != len(y_train) or len(x_test) != len(y_test):
        raise DataError(f"inputs and labels differ in length: train {len(x_train)}/{len(y_train)}, "
                        f"test {len(x_test)}/{len(y_test)}")
    if not 0 < validation_size < len(x_train):
        raise ConfigError(f"data.validation_size {validation_size} must be between 1 and {len(x_train) - 1}: the "
                          f"dataset has {len(x_train)} training examples and at least one must remain for training")
    available = len(x_train) - validation_size
    if train_size is not None and not 0 < train_size <= available:
        raise ConfigError(f"data.train_size {train_size} is larger than the {available} training examples left "
                          f"after data.validation_size {validation_size} (of {len(x_train)}); use at most {available}")

    def as_float(rows, copy: bool = False) -> torch.Tensor:
        """float32 rows, a fresh tensor when `copy` or when dividing (never the caller's storage divided)."""
        rows = torch.as_tensor(rows).to(torch.float32, copy=copy or divide_by is not None).contiguous()
        return rows.div_(divide_by) if divide_by is not None else rows

    x_fit, y_fit = x_train[:-validation_size], y_train[:-validation_size]
    if train_size is not None:  # a copy, so the rows left out can be freed
        x_fit, y_fit = as_float(x_fit[:train_size], copy=True), y_fit[:train_size].clone()
    else:
        x_fit = as_float(x_fit)
    classes = num_classes or int(max(y_train.max(), y_test.max()).item()) + 1
    if min(y_train.min(), y_test.min()) < 0:
        raise DataError("labels must be integers in 0..num_classes-1")
    return DataSplits(
        x_train=x_fit,
        y_train=y_fit.contiguous(),
        x_val=as_float(x_train[-validation_size:]),
        y_val=y_train[-validation_size:].contiguous(),
        x_test=as_float(x_test),
        y_test=y_test.contiguous(),
        num_classes=classes,
    )
