"""Which training examples a classifier sees at each step: a pure function of (data seed, step), so a resumed or
rewound run draws the same batches. Data is held in memory (splits with tensors x_train/y_train, ...) or streamed
(an image folder: `num_train`, `device`, `train_batches`, `evaluate_batches`)."""

from __future__ import annotations

import torch

from ticketlab.seeds import derive_seed


def iterations_per_epoch(num_train: int, batch_size: int) -> int:
    """Batches per epoch; the last partial batch is dropped so every step sees `batch_size` examples."""
    return max(num_train // batch_size, 1)


def batch_indices(step: int, num_train: int, batch_size: int, data_seed: int) -> torch.Tensor:
    """Indices of the examples seen at `step`: epoch e is a permutation drawn from (data_seed, e)."""
    per_epoch = iterations_per_epoch(num_train, batch_size)
    epoch, position = divmod(step, per_epoch)
    order = _epoch_order(num_train, data_seed, epoch)
    return order[position * batch_size : (position + 1) * batch_size]


def epoch_order(num_train: int, data_seed: int, epoch: int) -> torch.Tensor:
    """The order (a permutation of 0..num_train-1) in which epoch `epoch` visits the training examples."""
    generator = torch.Generator().manual_seed(derive_seed(data_seed, "epoch", epoch))
    return torch.randperm(num_train, generator=generator)


def _epoch_order(num_train: int, data_seed: int, epoch: int, _cache: dict = {}) -> torch.Tensor:
    key = (num_train, data_seed, epoch)
    if key not in _cache:  # one permutation per epoch; a tiny bounded memo, not shared state that matters
        _cache.clear()
        _cache[key] = epoch_order(num_train, data_seed, epoch)
    return _cache[key]


def held_in_memory(data) -> bool:
    """Whether `data` holds its splits as tensors (x_train, y_train, ...) rather than streaming them."""
    return hasattr(data, "x_train")


def num_train_examples(data) -> int:
    """Training examples of in-memory splits or of streamed data (an image folder's `num_train`)."""
    return len(data.x_train) if held_in_memory(data) else data.num_train


def data_device(data) -> torch.device:
    return data.x_train.device if held_in_memory(data) else data.device


def training_batches(data, start_step: int, total_steps: int, batch_size: int, data_seed: int,
                     shard: tuple[int, int] | None = None):
    """(inputs, labels) of each step from `start_step` to `total_steps`, in the order `batch_indices` draws.

    In-memory splits are indexed (whole global batches); streamed data (an image folder) decodes the same indices
    in worker processes, its random transforms seeded from (data_seed, step) and each example's place in the
    global batch, and with `shard` (rank, world size) decodes only that rank's contiguous slice."""
    num_train = num_train_examples(data)
    if held_in_memory(data):
        device = data.x_train.device
        for step in range(start_step, total_steps):
            indices = batch_indices(step, num_train, batch_size, data_seed).to(device)
            yield data.x_train.index_select(0, indices), data.y_train.index_select(0, indices)
        return
    rank, world = shard or (0, 1)
    size = batch_size // world
    steps = ((batch_indices(step, num_train, batch_size, data_seed)[rank * size:(rank + 1) * size],
              derive_seed(data_seed, "transform", step), rank * size) for step in range(start_step, total_steps))
    yield from data.train_batches(steps)


def first_inputs(data, split: str, count: int) -> torch.Tensor:
    """The first `count` inputs of `split` (evaluation transform for streamed data), on the data's device."""
    if held_in_memory(data):
        return {"train": data.x_train, "val": data.x_val, "test": data.x_test}[split][:count]
    chunks, held = [], 0
    for inputs, _ in data.evaluate_batches(split):
        chunks.append(inputs[: count - held])
        held += len(chunks[-1])
        if held >= count:
            break
    return torch.cat(chunks)
