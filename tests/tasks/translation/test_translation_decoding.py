"""Decoding on tiny random Transformers (no corpus): the key/value cache against recomputing the prefix, the
length limit, length batches and their order, progress, and one test decode when the early-stop weights are the
final ones."""

from __future__ import annotations

from contextlib import contextmanager

import pytest
import torch

import ticketlab
from ticketlab.config import DataConfig
from ticketlab.tasks import load_task
from ticketlab.tasks.translation import decode as decoding
from ticketlab.tasks.translation import train as training
from ticketlab.tasks.translation.batches import lengths, trim
from ticketlab.tasks.translation.decode import beam_search, greedy, length_batches, max_lengths, translate
from ticketlab.tasks.translation.evaluate import split_bleu
from ticketlab.tasks.translation.model import TransformerTranslator, initialize_translation_model
from ticketlab.tasks.translation.tokenizer import BOS_ID, EOS_ID, PAD_ID

VOCAB = 40


def tiny_model(tie_weights: bool = True, seed: int = 0, eos_boost: float = 0.0) -> TransformerTranslator:
    """2+2 layers x 16; `eos_boost` scales the </s> output row (untied) so that some sentences end early."""
    model = TransformerTranslator(VOCAB, width=16, layers=2, heads=2, ffn=32, dropout=0.1, tie_weights=tie_weights)
    initialize_translation_model(model, "glorot_uniform", seed)
    if eos_boost:
        with torch.no_grad():
            model.output.weight[EOS_ID] *= eos_boost
    return model.eval()


def sources(lengths_with_eos: list[int], seed: int = 1) -> torch.Tensor:
    """Padded source rows of the given lengths (random subwords, then </s>)."""
    generator = torch.Generator().manual_seed(seed)
    rows = torch.zeros(len(lengths_with_eos), max(lengths_with_eos), dtype=torch.int64)
    for row, length in enumerate(lengths_with_eos):
        rows[row, : length - 1] = torch.randint(4, VOCAB, (length - 1,), generator=generator)
        rows[row, length - 1] = EOS_ID
    return rows


SOURCE_LENGTHS = [7, 3, 12, 1, 9, 5, 12, 2]


@pytest.mark.parametrize("tie_weights, eos_boost", [(True, 0.0), (False, 0.0), (False, 6.0)])
def test_cached_decoding_gives_the_tokens_of_recomputing_the_prefix(tie_weights, eos_boost):
    model, source = tiny_model(tie_weights, eos_boost=eos_boost), sources(SOURCE_LENGTHS)
    cached, uncached = greedy(model, source), greedy(model, source, cached=False)
    assert cached == uncached
    assert beam_search(model, source, 3) == beam_search(model, source, 3, cached=False)
    if eos_boost:  # some sentences end with </s> and leave the batch while others go on
        limits = max_lengths(model, source).tolist()
        assert 0 < sum(len(ids) < limit for ids, limit in zip(cached, limits)) < len(source)


def test_cached_logits_equal_the_full_decoder_at_every_step():
    model, source = tiny_model(tie_weights=False), sources(SOURCE_LENGTHS)
    memory, padding = model.encode(source)
    words = torch.randint(4, VOCAB, (len(source), 9), generator=torch.Generator().manual_seed(2))
    prefix = torch.cat([torch.full((len(source), 1), BOS_ID), words], 1)
    decoder = model.start_decoding(memory, padding, prefix.shape[1])
    with torch.no_grad():
        for step in range(prefix.shape[1]):
            full = model.decode(prefix[:, : step + 1], memory, padding, last_only=True)[:, -1]
            torch.testing.assert_close(decoder.step(prefix[:, : step + 1]), full, rtol=1e-5, atol=1e-5)
        # selecting rows (finished sentences dropped, beams reordered) keeps each row's cache with it
        rows = torch.tensor([5, 0, 0, 3])
        decoder.select(rows)
        longer = torch.cat([prefix, torch.full((len(source), 1), 7)], 1)
        full = model.decode(longer[rows], memory[rows], padding[rows], last_only=True)[:, -1]
        torch.testing.assert_close(decoder.step(longer[rows]), full, rtol=1e-5, atol=1e-5)


def old_greedy(model, source: torch.Tensor) -> list[list[int]]:
    """The decoder before the cache, written out: the whole prefix every step, every row of the batch to
    floor(1.5 x the batch's longest source) + 10 tokens."""
    memory, padding = model.encode(source)
    tokens = torch.full((len(source), 1), BOS_ID)
    done = torch.zeros(len(source), dtype=torch.bool)
    with torch.no_grad():
        for _ in range(int(1.5 * int(lengths(source).max())) + 10):
            logits = model.decode(tokens, memory, padding, last_only=True)[:, -1]
            logits[:, PAD_ID] = -float("inf")
            choice = logits.argmax(-1).masked_fill(done, PAD_ID)
            tokens = torch.cat([tokens, choice[:, None]], 1)
            done |= choice == EOS_ID
    outputs = []
    for row in tokens[:, 1:].tolist():
        ends = [i for i, token in enumerate(row) if token in (EOS_ID, PAD_ID)]
        outputs.append(row[: ends[0]] if ends else row)
    return outputs


@pytest.mark.parametrize("eos_boost", [0.0, 6.0])
def test_the_same_tokens_as_before_except_where_the_own_limit_cuts(eos_boost):
    model, source = tiny_model(tie_weights=False, eos_boost=eos_boost), sources(SOURCE_LENGTHS)
    before, now = old_greedy(model, source), greedy(model, source)
    limits = [int(1.5 * length) + 10 for length in SOURCE_LENGTHS]  # floor(a S) + b, a = 1.5, b = 10
    assert max_lengths(model, source).tolist() == limits
    for old, new, limit in zip(before, now, limits):
        if len(old) < limit:  # ended with </s> within its own limit: unchanged
            assert new == old
        else:  # ran on: cut at its own limit
            assert new == old[:limit]


def test_outputs_stop_at_the_limit_and_the_models_maximum_positions():
    model, source = tiny_model(), sources(SOURCE_LENGTHS)
    assert all(len(ids) <= 10 for ids in greedy(model, source, max_len_a=0.0, max_len_b=10))
    assert all(len(ids) <= 2 * length + 1 for ids, length in zip(greedy(model, source, 2.0, 1), SOURCE_LENGTHS))
    model.max_target_positions = 4
    assert max_lengths(model, source).tolist() == [4] * len(SOURCE_LENGTHS)
    assert all(len(ids) <= 4 for ids in beam_search(model, source, 2))


def test_length_batches_sort_cover_once_and_keep_the_budget():
    source_lengths = torch.tensor([5, 1, 9, 3, 3, 7, 2, 9, 4])
    batches = length_batches(source_lengths, 12)
    flat = [row for batch in batches for row in batch]
    assert sorted(flat) == list(range(len(source_lengths)))
    assert [int(source_lengths[row]) for row in flat] == sorted(source_lengths.tolist())
    assert all(len(batch) * max(int(source_lengths[row]) for row in batch) <= 12 or len(batch) == 1
               for batch in batches)
    assert length_batches(torch.tensor([20]), 12) == [[0]]  # one sentence over the budget: a batch of its own


def test_translate_restores_the_source_order_across_batches(monkeypatch):
    model = tiny_model(tie_weights=False, eos_boost=6.0)
    source = sources([4, 11, 2, 8, 6, 13, 3, 9, 5, 7], seed=3)
    monkeypatch.setattr(decoding, "DECODE_BATCH_TOKENS", 20)  # several batches, out of the source order
    assert len(length_batches(lengths(source), 20)) > 2
    seen = []
    outputs = translate(model, source, on_progress=seen.append)
    assert outputs == [greedy(model, trim(source[row: row + 1]))[0] for row in range(len(source))]
    assert sum(seen) == len(source) and len(seen) == len(length_batches(lengths(source), 20))
    reversed_rows = torch.arange(len(source) - 1, -1, -1)
    assert translate(model, source[reversed_rows]) == outputs[::-1]
    assert translate(model, source, beam=2) == [beam_search(model, trim(source[row: row + 1]), 2)[0]
                                                for row in range(len(source))]


def test_training_decodes_the_test_split_once_when_the_early_stop_weights_are_final(tmp_path, monkeypatch):
    pairs = (["ein hund läuft", "eine katze sitzt", "der mann liest"] * 10,
             ["a dog runs", "a cat sits", "the man reads"] * 10)
    for split in ("train", "valid", "test"):
        for language, lines in zip(("de", "en"), pairs):
            (tmp_path / f"{split}.{language}").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    task = load_task("translation")
    data = task.load_data(DataConfig(name="parallel", data_dir=str(tmp_path), cache_dir=str(tmp_path / "cache"),
                                     vocab_size=40))
    # one validation, at the last step: the early-stopping weights are the final ones
    config = ticketlab.preset("transformer_tiny").replace(**{
        "train.steps": "4it", "train.eval_every": "4it", "train.warmup": "1it", "train.batch_size": 256})
    decodes, bars = [], []

    def counting_bleu(*args, **kwargs):
        decodes.append(kwargs.get("on_progress"))
        return split_bleu(*args, **kwargs)

    @contextmanager
    def recording_bar(sentences, label):
        counts = []
        bars.append((sentences, label, counts))
        yield counts.append

    monkeypatch.setattr(training, "split_bleu", counting_bleu)
    monkeypatch.setattr(training, "decoding_progress", recording_bar)
    model = task.initialize(task.build_model(config, data), config, 0)
    result = training.train_translation_model(model, data, config.train, masks={}, data_seed=0,
                                              on_progress=lambda steps: None)
    assert result.early_stop_iteration == result.final_iteration == 4
    assert len(decodes) == 1 and result.early_stop_test_metric == result.final_test_metric
    assert result.early_stop_test_loss == result.final_test_loss
    assert [(label, sentences, sum(counts)) for sentences, label, counts in bars] == [
        ("BLEU: decoding test, final weights", len(data.test), len(data.test))]
    # without a progress callback no bar is made
    decodes.clear()
    bars.clear()
    training.train_translation_model(task.initialize(task.build_model(config, data), config, 0), data, config.train,
                                     masks={}, data_seed=0)
    assert decodes and all(update is None for update in decodes) and not bars


def test_the_decoding_bar_is_labelled_on_a_terminal_and_silent_elsewhere(monkeypatch, capsys):
    import io
    import os
    import sys

    pty, fcntl, termios, struct = (pytest.importorskip(name) for name in ("pty", "fcntl", "termios", "struct"))
    from ticketlab.tasks.translation.evaluate import decoding_progress

    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    os.set_blocking(leader, False)
    with os.fdopen(follower, "w") as terminal:
        monkeypatch.setattr(sys, "stderr", terminal)
        with decoding_progress(8, "BLEU: decoding test, final weights") as update:
            update(3)
            update(5)
        terminal.flush()
        shown = os.read(leader, 65536).decode()
    os.close(leader)
    assert "BLEU: decoding test, final weights" in shown and "/8 " in shown  # redrawn at most every 0.1 s
    not_a_terminal = io.StringIO()
    monkeypatch.setattr(sys, "stderr", not_a_terminal)
    with decoding_progress(8, "BLEU") as update:
        update(8)
    assert not_a_terminal.getvalue() == ""
