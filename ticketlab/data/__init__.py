"""Datasets as in-memory tensors: `load_dataset(DataConfig)` returns train/validation/test splits."""

from __future__ import annotations

import torch

from ticketlab.config import DataConfig
from ticketlab.data.splits import DataSplits, make_splits
from ticketlab.errors import ConfigError


def load_dataset(config: DataConfig) -> DataSplits:
    """Load (generate, find or download) the dataset named in `config` and split off validation data.

    `imagenet` / `image_folder` return `ticketlab.data.image_folder.FolderData` instead: files decoded batch by
    batch (see that module). Otherwise: keep only `config.classes` (relabelled 0..k-1, see `ticketlab.data.subsets`) and resize / re-channel
    images to `config.image_size` / `config.channels`.

    MNIST and Fashion-MNIST pixels are scaled to [0, 1] as in the lottery-ticket paper's code; CIFAR-10/100 and
    SVHN ([N, 3, 32, 32]) are normalized per channel with the mean and std of the training split (validation
    held out). Augmentation (`config.augment`) is applied per batch by the training loop, not here.
    """
    if config.name in FOLDER_DATASETS:
        return _load_folder(config)
    splits = _load_whole(config)
    if config.classes is not None:
        from ticketlab.config import parse_classes
        from ticketlab.data.subsets import select_classes

        splits = select_classes(splits, parse_classes(config.classes), config.name)
    if config.image_size is not None or config.channels is not None:
        from ticketlab.data.subsets import reshape_images

        splits = reshape_images(splits, config.image_size, config.channels)
    return splits


FOLDER_DATASETS = ("imagenet", "image_folder")  # streamed from disk, not held in memory
IN_MEMORY_DATASETS = ("mnist1d", "fashion_mnist", "mnist", "cifar10", "cifar100", "svhn")


def _load_folder(config: DataConfig):
    """An ImageFolder-layout directory (ImageNet's usual layout) as `FolderData`, decoded batch by batch."""
    from ticketlab.data.image_folder import load_image_folder

    if config.channels not in (None, 3):
        raise ConfigError(f"data.channels {config.channels} is not supported for {config.name}: images are RGB")
    classes = None
    if config.classes is not None:
        from ticketlab.config import parse_classes

        classes = parse_classes(config.classes)
    return load_image_folder(config.data_dir, validation_size=config.validation_size, train_size=config.train_size,
                             image_size=config.image_size, augment=config.augment, classes=classes,
                             loader_workers=config.loader_workers, name=config.name)


def _load_whole(config: DataConfig) -> DataSplits:
    """Every class of the dataset, as stored (see `load_dataset`)."""
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
            torch.from_numpy(arrays["train_images"]),
            torch.from_numpy(arrays["train_labels"].astype("int64")),
            torch.from_numpy(arrays["test_images"]),
            torch.from_numpy(arrays["test_labels"].astype("int64")),
            validation_size=config.validation_size,
            train_size=config.train_size,
            num_classes=10,
            divide_by=255.0,
        )
    if config.name in ("cifar10", "cifar100", "svhn"):
        from ticketlab.data.augment import normalize_channels

        if config.name == "svhn":
            from ticketlab.data.svhn import load_svhn

            arrays = load_svhn(data_dir=config.data_dir, cache_dir=config.cache_dir, download=config.download)
        else:
            from ticketlab.data.cifar import load_cifar

            arrays = load_cifar(
                config.name, data_dir=config.data_dir, cache_dir=config.cache_dir, download=config.download
            )
        splits = make_splits(
            torch.from_numpy(arrays.pop("train_images")),
            torch.from_numpy(arrays.pop("train_labels")),
            torch.from_numpy(arrays.pop("test_images")),
            torch.from_numpy(arrays.pop("test_labels")),
            validation_size=config.validation_size,
            train_size=config.train_size,
            num_classes=100 if config.name == "cifar100" else 10,
            divide_by=255.0,
        )
        return normalize_channels(splits)
    raise ConfigError(f"unknown data.name {config.name!r}; allowed: {', '.join(IN_MEMORY_DATASETS + FOLDER_DATASETS)}")


__all__ = ["DataSplits", "load_dataset", "make_splits"]
