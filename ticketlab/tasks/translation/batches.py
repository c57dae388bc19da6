"""Batches by token count, as fairseq's `--max-tokens`: pairs sorted by length, cut into batches of at most
`train.batch_size` padded tokens (sentences x the longest source or target side in the batch), and one epoch
visits the batches in an order drawn from (data_seed, epoch). The batch of a step is a pure function of
(data, batch size, data_seed, step), so a resumed run repeats the uninterrupted one."""

from __future__ import annotations

import torch

from ticketlab.config import TrainConfig
from ticketlab.errors import ConfigError
from ticketlab.seeds import derive_seed
from ticketlab.tasks.translation.tokenizer import PAD_ID


def lengths(ids: torch.Tensor) -> torch.Tensor:
    """Tokens of each padded row (pad id 0 excluded)."""
    return (ids != PAD_ID).sum(dim=1)


_CACHE: dict = {}  # (id(source), id(target), max_tokens) -> (source, target, batches): steps_per_epoch is asked often


def token_batches(source: torch.Tensor, target: torch.Tensor, max_tokens: int) -> list[torch.Tensor]:
    """Row indices of each batch: length-sorted (target, then source) runs of at most `max_tokens` padded
    tokens. ConfigError if one pair alone is longer than `max_tokens`."""
    key = (id(source), id(target), max_tokens)
    cached = _CACHE.get(key)
    if cached is not None and cached[0] is source and cached[1] is target:
        return cached[2]
    batches = _token_batches(source, target, max_tokens)
    if len(_CACHE) > 8:
        _CACHE.clear()
    _CACHE[key] = (source, target, batches)
    return batches


def _token_batches(source: torch.Tensor, target: torch.Tensor, max_tokens: int) -> list[torch.Tensor]:
    source_lengths, target_lengths = lengths(source).tolist(), lengths(target).tolist()
    longest = max(max(source_lengths), max(target_lengths))
    if longest > max_tokens:
        raise ConfigError(f"train.batch_size {max_tokens} (tokens per batch, translation) is smaller than the longest "
                          f"training pair ({longest} tokens); use at least {longest}")
    order = sorted(range(len(source_lengths)), key=lambda row: (target_lengths[row], source_lengths[row], row))
    batches, current, width = [], [], 0
    for row in order:
        row_width = max(source_lengths[row], target_lengths[row])
        if current and (len(current) + 1) * max(width, row_width) > max_tokens:
            batches.append(torch.tensor(current))
            current, width = [], 0
        current.append(row)
        width = max(width, row_width)
    if current:
        batches.append(torch.tensor(current))
    return batches


def steps_per_epoch(data, config: TrainConfig) -> int:
    """Batches in one pass over the training split."""
    return len(token_batches(data.train.source, data.train.target, config.batch_size))


def batch_at(batches: list[torch.Tensor], step: int, data_seed: int) -> torch.Tensor:
    """Row indices of the batch trained at `step` (epoch = step // batches, shuffled order per epoch)."""
    epoch, position = divmod(step, len(batches))
    generator = torch.Generator().manual_seed(derive_seed(data_seed, "batch_order", epoch))
    return batches[int(torch.randperm(len(batches), generator=generator)[position])]


def trim(ids: torch.Tensor) -> torch.Tensor:
    """The rows cut to their longest unpadded length."""
    return ids[:, : max(1, int(lengths(ids).max()))]
