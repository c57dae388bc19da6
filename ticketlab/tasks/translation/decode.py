"""Greedy and beam-search decoding of a TransformerTranslator: incremental, length-limited, batched by length.

Incremental: each step feeds only the newest token; the decoder keeps every layer's self-attention keys and
values and computes the encoder output's cross-attention keys and values once (`model.IncrementalDecoder`).
Its tokens are those of recomputing the whole prefix every step (`cached=False`, also used for a model without
`start_decoding`); the logits agree up to float rounding.

Length: a hypothesis ends at </s> or after `max_len_a * S + max_len_b` tokens for a source of S tokens (its </s>
included), fairseq's --max-len-a/--max-len-b rule, capped by the model's `max_target_positions`. Defaults
a = 1.5, b = 10: this project's limit since its first version, generous for Multi30k (target and source have
about the same number of subwords); fairseq's own defaults (a = 0, b = 200) would let an untrained model write
200 tokens a sentence, and the annotated Transformer's Multi30k example a fixed 72. Every sentence has its own
limit, and a sentence that has finished leaves the batch, so it costs nothing more. (Before, every sentence of a
batch could run to the limit of the batch's longest source: a sentence without </s> by its own limit is now cut
there; every other sentence decodes to the same tokens as before.)

Batches: sources sorted by length, cut into batches of about DECODE_BATCH_TOKENS source tokens (divided by the
beam width), translations returned in the sources' order.

Beam search follows fairseq's defaults: at each step the 2k best continuations of the k live hypotheses are
ranked; an end-of-sentence among the best k finishes that hypothesis, scored by its log-probability divided by
its length (tokens including </s>, length penalty 1); a sentence is done once k hypotheses have finished (or at
its length limit), and the best finished one is returned. With k = 1 this is exactly greedy decoding.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ticketlab.tasks.translation.batches import lengths, trim
from ticketlab.tasks.translation.tokenizer import BOS_ID, EOS_ID, PAD_ID

DECODE_BATCH_TOKENS = 4096  # source tokens per decoding batch (times the beam width in hypotheses)
MAX_LEN_A, MAX_LEN_B = 1.5, 10  # output tokens: at most MAX_LEN_A * source tokens + MAX_LEN_B


def max_lengths(model: nn.Module, source: torch.Tensor, max_len_a: float = MAX_LEN_A,
                max_len_b: int = MAX_LEN_B) -> torch.Tensor:
    """Most output tokens (</s> included) of each source row: floor(a * S) + b, at least 1, at most the model's
    `max_target_positions` (if it has one)."""
    limits = (max_len_a * lengths(source).double()).floor().long() + max_len_b
    return limits.clamp(min=1, max=getattr(model, "max_target_positions", None))


@torch.no_grad()
def greedy(model: nn.Module, source: torch.Tensor, max_len_a: float = MAX_LEN_A, max_len_b: int = MAX_LEN_B,
           cached: bool = True) -> list[list[int]]:
    """The argmax continuation of each source row, up to and excluding </s>."""
    memory, padding = model.encode(source)
    limits = max_lengths(model, source, max_len_a, max_len_b)
    decoder = _decoder(model, memory, padding, int(limits.max()), cached)
    sentence = torch.arange(len(source), device=source.device)  # the source row of each row still decoding
    tokens = torch.full((len(source), 1), BOS_ID, dtype=torch.int64, device=source.device)
    outputs: list[list[int]] = [[] for _ in range(len(source))]
    for step in range(int(limits.max())):
        logits = decoder.step(tokens)
        logits[:, PAD_ID] = -float("inf")
        choice = logits.argmax(dim=-1)
        tokens = torch.cat([tokens, choice[:, None]], dim=1)
        done = (choice == EOS_ID) | (limits <= step + 1)
        if bool(done.any()):
            for row in done.nonzero().flatten().tolist():
                outputs[int(sentence[row])] = _strip(tokens[row, 1:].tolist())
            going = (~done).nonzero().flatten()
            if not len(going):
                break
            tokens, sentence, limits = tokens[going], sentence[going], limits[going]
            decoder.select(going)
    return outputs


@torch.no_grad()
def beam_search(model: nn.Module, source: torch.Tensor, beam: int, max_len_a: float = MAX_LEN_A,
                max_len_b: int = MAX_LEN_B, cached: bool = True) -> list[list[int]]:
    """The best hypothesis of each source row under beam search of width `beam` (see the module docstring)."""
    device, batch = source.device, len(source)
    memory, padding = model.encode(source)
    limits = max_lengths(model, source, max_len_a, max_len_b)
    decoder = _decoder(model, memory.repeat_interleave(beam, 0), padding.repeat_interleave(beam, 0),
                       int(limits.max()), cached)
    sentence = torch.arange(batch, device=device)  # the source row of each sentence still decoding
    tokens = torch.full((batch * beam, 1), BOS_ID, dtype=torch.int64, device=device)
    scores = torch.zeros(batch, beam, device=device)
    scores[:, 1:] = -float("inf")  # every beam starts as the same empty hypothesis: keep one
    best_score = torch.full((batch,), -float("inf"), device=device)
    best_tokens: list[list[int] | None] = [None] * batch
    finished = torch.zeros(batch, dtype=torch.int64, device=device)
    for step in range(int(limits.max())):
        live = len(sentence)
        logits = decoder.step(tokens)
        logits[:, PAD_ID] = -float("inf")
        log_probs = torch.log_softmax(logits.float(), dim=-1)
        vocab = log_probs.shape[-1]
        candidates = (scores.view(-1, 1) + log_probs).view(live, beam * vocab)
        top_scores, top_index = candidates.topk(2 * beam, dim=1)
        origin, token = top_index // vocab, top_index % vocab
        ends = (token == EOS_ID) | (limits == step + 1)[:, None]
        closing = ends.clone()
        closing[:, beam:] = False  # only ends ranked among the best k finish a hypothesis
        if bool(closing.any()):
            normalized = torch.where(closing, top_scores / (step + 1), torch.full_like(top_scores, -float("inf")))
            value, where = normalized.max(dim=1)
            better = (value > best_score) & closing.any(dim=1)
            previous = tokens.view(live, beam, -1)
            for row in better.nonzero().flatten().tolist():
                rank = int(where[row])
                hypothesis = previous[row, origin[row, rank]].tolist()[1:]
                if int(token[row, rank]) != EOS_ID:
                    hypothesis.append(int(token[row, rank]))
                best_tokens[int(sentence[row])] = hypothesis
            best_score = torch.where(better, value, best_score)
            finished += closing.sum(dim=1)
        going = (finished < beam).nonzero().flatten()
        if not len(going):
            break
        # continue the sentences not done with their best k candidates that do not end (stable: ties keep rank)
        keep = torch.sort(ends[going].int(), dim=1, stable=True).indices[:, :beam]
        scores = top_scores[going].gather(1, keep)
        source_rows = (going[:, None] * beam + origin[going].gather(1, keep)).flatten()
        tokens = torch.cat([tokens[source_rows], token[going].gather(1, keep).flatten()[:, None]], dim=1)
        decoder.select(source_rows)
        sentence, limits, best_score, finished = sentence[going], limits[going], best_score[going], finished[going]
    return [hypothesis if hypothesis is not None else [] for hypothesis in best_tokens]


def translate(model: nn.Module, source: torch.Tensor, beam: int = 1, max_len_a: float = MAX_LEN_A,
              max_len_b: int = MAX_LEN_B, on_progress: Callable[[int], None] | None = None) -> list[list[int]]:
    """Subword ids of the translation of every padded source row (in row order), decoded in length-sorted
    batches of about DECODE_BATCH_TOKENS source tokens, in eval mode; `on_progress(n)` after each batch of n
    sentences."""
    was_training = model.training
    model.eval()
    source_lengths = lengths(source).clamp(min=1)
    results: list[list[int] | None] = [None] * len(source)
    for rows in length_batches(source_lengths, DECODE_BATCH_TOKENS // beam):
        batch = trim(source[rows])
        if beam == 1:
            outputs = greedy(model, batch, max_len_a, max_len_b)
        else:
            outputs = beam_search(model, batch, beam, max_len_a, max_len_b)
        for row, output in zip(rows, outputs):
            results[row] = output
        if on_progress is not None:
            on_progress(len(rows))
    model.train(was_training)
    return results


def length_batches(source_lengths: torch.Tensor, max_tokens: int) -> list[list[int]]:
    """Row indices of each batch: rows sorted by length (ties in row order), cut into runs of at most
    `max_tokens` (rows x the run's longest length; at least one row a batch)."""
    order = torch.argsort(source_lengths, stable=True).tolist()
    batches, start = [], 0
    while start < len(order):
        guess = max(1, max_tokens // int(source_lengths[order[start]]))
        longest = int(source_lengths[order[min(start + guess, len(order)) - 1]])  # ascending: the window's longest
        end = min(len(order), start + max(1, max_tokens // longest))
        batches.append(order[start:end])
        start = end
    return batches


class _PrefixDecoder:
    """`IncrementalDecoder`'s interface without a cache: the whole prefix through `model.decode` every step."""

    def __init__(self, model: nn.Module, memory: torch.Tensor, padding: torch.Tensor):
        self.model, self.memory, self.padding = model, memory, padding

    def step(self, prefix: torch.Tensor) -> torch.Tensor:
        return self.model.decode(prefix, self.memory, self.padding, last_only=True)[:, -1]

    def select(self, rows: torch.Tensor) -> None:
        self.memory, self.padding = self.memory[rows], self.padding[rows]


def _decoder(model: nn.Module, memory: torch.Tensor, padding: torch.Tensor, max_steps: int, cached: bool):
    if cached and hasattr(model, "start_decoding"):
        return model.start_decoding(memory, padding, max_steps)
    return _PrefixDecoder(model, memory, padding)


def _strip(ids: list[int]) -> list[int]:
    out = []
    for token in ids:
        if token in (EOS_ID, PAD_ID):
            break
        out.append(token)
    return out
