"""Evaluation of a translator: mean cross-entropy per target token (teacher forcing), and detokenized corpus BLEU
with sacrebleu (its default 13a tokenization) of greedy or beam-search translations."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Callable, Iterator

import torch
from torch import nn
from torch.nn import functional as F

from ticketlab.errors import ConfigError
from ticketlab.tasks.translation.batches import token_batches, trim
from ticketlab.tasks.translation.decode import translate
from ticketlab.tasks.translation.tokenizer import PAD_ID, decode, load_tokenizer

EVAL_BATCH_TOKENS = 8192
INSTALL = "pip install 'ticketlab[nlp]'"


@torch.no_grad()
def split_loss(model: nn.Module, data, split: str) -> float:
    """Mean cross-entropy (nats, no label smoothing) per target token of `split`, in eval mode."""
    part = data.split(split)
    was_training = model.training
    model.eval()
    total = torch.zeros((), dtype=torch.float64, device=part.source.device)
    count = 0
    for rows in token_batches(part.source, part.target, max(EVAL_BATCH_TOKENS, part.target.shape[1],
                                                               part.source.shape[1])):
        rows = rows.to(part.source.device)
        source, target = trim(part.source[rows]), trim(part.target[rows])
        logits = model(source, target[:, :-1])
        gold = target[:, 1:]
        total += F.cross_entropy(logits.flatten(0, 1).float(), gold.flatten(), ignore_index=PAD_ID,
                                 reduction="sum").double()
        count += int((gold != PAD_ID).sum())
    model.train(was_training)
    return total.item() / max(count, 1)


def corpus_bleu(hypotheses: list[str], references: list[str]) -> tuple[float, str]:
    """(sacrebleu corpus BLEU of detokenized `hypotheses` against one reference each, its signature)."""
    metric = _bleu_metric()
    score = metric.corpus_score(list(hypotheses), [list(references)]).score
    return score, metric.get_signature().format()


def split_bleu(model: nn.Module, data, split: str, beam: int = 1,
               on_progress: Callable[[int], None] | None = None) -> tuple[float, str, list[str]]:
    """(corpus BLEU of the translations of `split` against its raw references, sacrebleu's signature, the
    detokenized translations); `on_progress(n)` as each n more sentences are decoded."""
    part = data.split(split)
    tokenizer = load_tokenizer(data.tokenizer_json)
    hypotheses = decode(tokenizer, translate(model, part.source, beam, on_progress=on_progress))
    score, signature = corpus_bleu(hypotheses, part.references)
    return score, signature, hypotheses


def evaluate(model: nn.Module, data, split: str, beam: int = 1) -> dict[str, float]:
    """{'loss': cross-entropy per target token, 'bleu': corpus BLEU of beam-`beam` translations} on `split`."""
    if split not in ("train", "val", "test"):
        raise ConfigError(f"unknown split {split!r}; allowed: train, val, test")
    return {"loss": split_loss(model, data, split), "bleu": split_bleu(model, data, split, beam)[0]}


@contextmanager
def decoding_progress(sentences: int, label: str) -> Iterator[Callable[[int], None]]:
    """A tqdm bar on stderr over `sentences` decoded sentences, described by `label`, shown only on a terminal
    and removed when done; yields its update function (for `split_bleu`'s on_progress)."""
    from tqdm import tqdm

    bar = tqdm(total=sentences, desc=label, unit="sentence", leave=False, disable=None, dynamic_ncols=True,
               file=sys.stderr)
    try:
        yield bar.update
    finally:
        bar.close()


def _bleu_metric():
    try:
        from sacrebleu.metrics import BLEU
    except ImportError:
        raise ConfigError(f"BLEU needs the sacrebleu package: {INSTALL}") from None
    return BLEU()
