"""Token streams for truncated BPTT: batchify a split into parallel streams and cut them into segments.

A split of n tokens becomes `batch_size` contiguous streams (a [n // batch_size, batch_size] tensor, column b
holding tokens b*len .. (b+1)*len - 1; the tail that does not fill a row is dropped), as PyTorch's
examples/word_language_model does. Training epoch e starts at a random offset in [0, sequence_length) drawn from
(data_seed, e), so different data seeds see differently aligned segments, and every epoch has the same number of
segments: (len - sequence_length) // sequence_length. The data order is thus a pure function of the step.
"""

from __future__ import annotations

import torch

from ticketlab.config import TrainConfig
from ticketlab.errors import ConfigError
from ticketlab.seeds import derive_seed


def batchify(tokens: torch.Tensor, streams: int) -> torch.Tensor:
    """[len, streams]: `tokens` cut into `streams` contiguous columns (the remainder dropped)."""
    length = len(tokens) // streams
    return tokens[: length * streams].view(streams, length).t()


def segments_per_epoch(num_tokens: int, batch_size: int, sequence_length: int) -> int:
    """Training segments (optimizer steps) in one pass over `num_tokens` split into `batch_size` streams."""
    return (num_tokens // batch_size - sequence_length) // sequence_length


def steps_per_epoch(data, config: TrainConfig) -> int:
    """Optimizer steps per epoch of `data.train` (TokenSplits) at `config.batch_size` streams; ConfigError if none fit."""
    count = segments_per_epoch(len(data.train), config.batch_size, data.sequence_length)
    if count < 1:
        raise ConfigError(
            f"data.sequence_length {data.sequence_length} x train.batch_size {config.batch_size} does not fit the "
            f"training split of {len(data.train)} tokens: each of the {config.batch_size} streams needs at least "
            f"{2 * data.sequence_length} tokens (2 x sequence_length)")
    return count


def epoch_offset(sequence_length: int, data_seed: int, epoch: int) -> int:
    """Where epoch `epoch`'s first segment starts in every stream, in [0, sequence_length)."""
    generator = torch.Generator().manual_seed(derive_seed(data_seed, "bptt_offset", epoch))
    return int(torch.randint(sequence_length, (1,), generator=generator))


def training_segment(stream: torch.Tensor, step: int, per_epoch: int, sequence_length: int,
                     data_seed: int) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """(inputs, targets, starts_epoch) of step `step`: [sequence_length, batch] ids and their next tokens."""
    epoch, position = divmod(step, per_epoch)
    start = epoch_offset(sequence_length, data_seed, epoch) + position * sequence_length
    inputs = stream[start : start + sequence_length]
    targets = stream[start + 1 : start + 1 + sequence_length]
    return inputs, targets, position == 0
