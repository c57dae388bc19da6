"""Greedy and beam-search decoding of a TransformerTranslator, batched.

Beam search follows fairseq's defaults: at each step the 2k best continuations of the k live hypotheses are
ranked; an end-of-sentence among the best k finishes that hypothesis, scored by its log-probability divided by
its length (tokens including </s>, length penalty 1); a sentence is done once k hypotheses have finished, and
the best finished one is returned. With k = 1 this is exactly greedy decoding. Hypotheses end at </s> or after
`max_length(S) = 1.5 S + 10` tokens for a source of S tokens.
"""

from __future__ import annotations

import torch
from torch import nn

from ticketlab.tasks.translation.batches import lengths, trim
from ticketlab.tasks.translation.tokenizer import BOS_ID, EOS_ID, PAD_ID

DECODE_BATCH_TOKENS = 4096  # source tokens per decoding batch (times the beam width in hypotheses)


def max_length(source: torch.Tensor) -> int:
    return int(1.5 * int(lengths(source).max())) + 10


@torch.no_grad()
def greedy(model: nn.Module, source: torch.Tensor) -> list[list[int]]:
    """The argmax continuation of each source row, up to and excluding </s>."""
    memory, padding = model.encode(source)
    batch = len(source)
    tokens = torch.full((batch, 1), BOS_ID, dtype=torch.int64, device=source.device)
    done = torch.zeros(batch, dtype=torch.bool, device=source.device)
    for _ in range(max_length(source)):
        logits = model.decode(tokens, memory, padding, last_only=True)[:, -1]
        logits[:, PAD_ID] = -float("inf")
        choice = logits.argmax(dim=-1).masked_fill(done, PAD_ID)
        tokens = torch.cat([tokens, choice[:, None]], dim=1)
        done |= choice == EOS_ID
        if bool(done.all()):
            break
    return [_strip(row) for row in tokens[:, 1:].tolist()]


@torch.no_grad()
def beam_search(model: nn.Module, source: torch.Tensor, beam: int) -> list[list[int]]:
    """The best hypothesis of each source row under beam search of width `beam` (see the module docstring)."""
    device, batch = source.device, len(source)
    memory, padding = model.encode(source)
    memory, padding = memory.repeat_interleave(beam, 0), padding.repeat_interleave(beam, 0)
    tokens = torch.full((batch * beam, 1), BOS_ID, dtype=torch.int64, device=device)
    scores = torch.zeros(batch, beam, device=device)
    scores[:, 1:] = -float("inf")  # every beam starts as the same empty hypothesis: keep one
    best_score = torch.full((batch,), -float("inf"), device=device)
    best_tokens: list[list[int] | None] = [None] * batch
    finished = torch.zeros(batch, dtype=torch.int64, device=device)
    limit = max_length(source)
    rows = torch.arange(batch, device=device)
    for step in range(limit):
        logits = model.decode(tokens, memory, padding, last_only=True)[:, -1]
        logits[:, PAD_ID] = -float("inf")
        log_probs = torch.log_softmax(logits.float(), dim=-1)
        vocab = log_probs.shape[-1]
        candidates = (scores.view(-1, 1) + log_probs).view(batch, beam * vocab)
        top_scores, top_index = candidates.topk(2 * beam, dim=1)
        origin, token = top_index // vocab, top_index % vocab
        ends = (token == EOS_ID) | (step == limit - 1)
        live = finished < beam
        closing = ends & live[:, None]
        closing[:, beam:] = False  # only ends ranked among the best k finish a hypothesis
        if bool(closing.any()):
            normalized = torch.where(closing, top_scores / (step + 1), torch.full_like(top_scores, -float("inf")))
            value, where = normalized.max(dim=1)
            better = (value > best_score) & closing.any(dim=1)
            previous = tokens.view(batch, beam, -1)
            for sentence in better.nonzero().flatten().tolist():
                rank = int(where[sentence])
                hypothesis = previous[sentence, origin[sentence, rank]].tolist()[1:]
                if int(token[sentence, rank]) != EOS_ID:
                    hypothesis.append(int(token[sentence, rank]))
                best_tokens[sentence] = hypothesis
            best_score = torch.where(better, value, best_score)
            finished += closing.sum(dim=1)
        if bool((finished >= beam).all()):
            break
        # continue with the best k candidates that do not end (stable: ties keep rank order)
        keep = torch.sort(ends.int(), dim=1, stable=True).indices[:, :beam]
        next_scores = top_scores.gather(1, keep)
        next_origin = origin.gather(1, keep)
        next_token = token.gather(1, keep)
        source_rows = (rows[:, None] * beam + next_origin).flatten()
        tokens = torch.cat([tokens[source_rows], next_token.flatten()[:, None]], dim=1)
        scores = next_scores.masked_fill(~(finished < beam)[:, None], -float("inf"))
    return [hypothesis if hypothesis is not None else [] for hypothesis in best_tokens]


def translate(model: nn.Module, source: torch.Tensor, beam: int = 1) -> list[list[int]]:
    """Subword ids of the translation of every padded source row (in row order), decoded in length-sorted
    batches of about DECODE_BATCH_TOKENS source tokens, in eval mode."""
    was_training = model.training
    model.eval()
    source_lengths = lengths(source).clamp(min=1)
    order = torch.argsort(source_lengths, stable=True).tolist()
    results: list[list[int] | None] = [None] * len(source)
    start = 0
    while start < len(order):
        guess = max(1, DECODE_BATCH_TOKENS // beam // int(source_lengths[order[start]]))
        longest = int(source_lengths[order[min(start + guess, len(order)) - 1]])  # ascending: the window's longest
        end = min(len(order), start + max(1, DECODE_BATCH_TOKENS // beam // longest))
        rows = order[start:end]
        batch = trim(source[rows])
        outputs = greedy(model, batch) if beam == 1 else beam_search(model, batch, beam)
        for row, output in zip(rows, outputs):
            results[row] = output
        start = end
    model.train(was_training)
    return results


def _strip(ids: list[int]) -> list[int]:
    out = []
    for token in ids:
        if token in (EOS_ID, PAD_ID):
            break
        out.append(token)
    return out
