"""Datasets as in-memory tensors: `load_dataset(DataConfig)` returns train/validation/test splits."""

from __future__ import annotations

import torch

from ticketlab.config import DATASET_NAMES, DataConfig
from ticketlab.data.splits import DataSplits, make_splits
from ticketlab.errors import ConfigError


def load_dataset(config: DataConfig) -> DataSplits:
    """Load (generate, find or download) the dataset named in `config` and split off validation data.

    MNIST and Fashion-MNIST pixels are scaled to [0, 1] as in the lottery-ticket paper's code.
    """
    if config.name == "mnist1d":
        from ticketlab.data.mnist1d import generate_mnist1d

        arrays = generate_mnist1d()
        return make_splits(
            torch.from_numpy(arrays["x_train"]),
            torch.from_numpy(arrays["y_train"]),
            torch.from_numpy(arrays["x_test"]),
            torch.from_numpy(arrays["y_test"]),
            validation_size=config.validation_size,
            train_size=config.train_size,
            num_classes=10,
        )
    if config.name in ("mnist", "fashion_mnist"):
        from ticketlab.data.mnist import load_mnist_like

        arrays = load_mnist_like(
            config.name, data_dir=config.data_dir, cache_dir=config.cache_dir, download=config.download
        )
        return make_splits(
            torch.from_numpy(arrays["train_images"]).float().div_(255.0),
            torch.from_numpy(arrays["train_labels"].astype("int64")),
            torch.from_numpy(arrays["test_images"]).float().div_(255.0),
            torch.from_numpy(arrays["test_labels"].astype("int64")),
            validation_size=config.validation_size,
            train_size=config.train_size,
            num_classes=10,
        )
    raise ConfigError(f"unknown data.name {config.name!r}; allowed: {', '.join(DATASET_NAMES)}")


__all__ = ["DataSplits", "load_dataset", "make_splits"]
