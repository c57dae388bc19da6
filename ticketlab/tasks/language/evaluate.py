"""Evaluation of a language model on a whole split: mean loss per token and perplexity or bits per character."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from ticketlab.errors import ConfigError
from ticketlab.tasks.language.streams import batchify

# Parallel streams of an evaluated split: 10 for words, as PyTorch's word_language_model; 100 for characters (a
# 55,770-character Tiny Shakespeare split becomes 100 streams of 557: long enough that each stream's zero start
# state costs little, and ~10x fewer sequential LSTM steps than 10 streams on a CPU).
EVAL_STREAMS = {"word": 10, "char": 100}
EVAL_LOGITS = 1 << 24  # logits per evaluation segment (64 MiB of float32), which bounds its length...
EVAL_POSITIONS = 1 << 14  # ...as do its (time x stream) positions, bounding the LSTM's activations too
SPLIT_NAMES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}


def metric_name(level: str) -> str:
    """The primary metric of word-level data ('perplexity') or character-level data ('bits_per_char')."""
    return "perplexity" if level == "word" else "bits_per_char"


def metric_value(loss: float, level: str) -> float:
    """Perplexity exp(loss) for words, loss / ln 2 bits per character for characters (loss in nats per token)."""
    return math.exp(min(loss, 700.0)) if level == "word" else loss / math.log(2.0)


@torch.no_grad()
def evaluate(model: nn.Module, data, split: str, streams: int | None = None) -> dict[str, float]:
    """{'loss': mean cross-entropy in nats per predicted token, metric: perplexity or bits per character}.

    In eval mode, over `split` ('train', 'val' or 'test') cut into `streams` parallel streams (default
    EVAL_STREAMS of the data's level), the hidden state carried through each stream from a zero start; every
    token but a stream's first is predicted.
    """
    if split not in SPLIT_NAMES:
        raise ConfigError(f"unknown split {split!r}; allowed: train, val, test")
    tokens = getattr(data, SPLIT_NAMES[split])
    check_vocabulary(model, data)
    streams = max(1, min(streams or EVAL_STREAMS[data.level], len(tokens) // 2))
    stream = batchify(tokens, streams)
    if len(stream) < 2:
        raise ConfigError(f"the {split} split holds {len(tokens)} tokens: too few to evaluate (need at least 2)")
    segment = max(1, min(EVAL_LOGITS // (streams * data.vocab_size), EVAL_POSITIONS // streams))
    was_training = model.training
    model.eval()
    total = torch.zeros((), dtype=torch.float64, device=tokens.device)
    hidden = None
    for start in range(0, len(stream) - 1, segment):
        end = min(start + segment, len(stream) - 1)
        logits, hidden = model(stream[start:end], hidden)
        total += F.cross_entropy(logits.flatten(0, 1), stream[start + 1 : end + 1].flatten(), reduction="sum").double()
    model.train(was_training)
    loss = total.item() / ((len(stream) - 1) * streams)
    return {"loss": loss, metric_name(data.level): metric_value(loss, data.level)}


def check_vocabulary(model: nn.Module, data) -> None:
    """ConfigError unless the model's embedding and decoder have exactly the data's vocabulary size."""
    if not (isinstance(getattr(model, "encoder", None), nn.Embedding) and hasattr(model, "decoder")):
        return  # not an LSTMLanguageModel: nothing to compare
    sizes = (model.encoder.num_embeddings, model.decoder.out_features)
    if sizes != (data.vocab_size, data.vocab_size):
        raise ConfigError(f"the model's embedding/decoder have {sizes[0]}/{sizes[1]} tokens but the data's vocabulary "
                          f"has {data.vocab_size}: build the model for this dataset")
