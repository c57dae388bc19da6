"""Tokenizer, BLEU, decoding, batching and masking of the translation task, against independent computations."""

from __future__ import annotations

import math

import pytest
import torch

from ticketlab.pruning import prunable_weights
from ticketlab.tasks import load_task
from ticketlab.tasks.translation.batches import batch_at, lengths, token_batches
from ticketlab.tasks.translation.decode import beam_search, greedy, max_lengths, translate
from ticketlab.tasks.translation.evaluate import corpus_bleu
from ticketlab.tasks.translation.tokenizer import decode, encode, load_tokenizer, train_tokenizer

TASK = load_task("translation")


def test_tokenizer_round_trip_restores_the_text():
    texts = ["Zwei junge Männer sind im Freien.", "A dog runs, fast!", "Ein Hund läuft  schnell."] * 20
    tokenizer = load_tokenizer(train_tokenizer(texts, vocab_size=120))
    ids = encode(tokenizer, texts[:3])
    assert all(len(row) < len(text) for row, text in zip(ids, texts))  # merges happened
    assert decode(tokenizer, ids) == texts[:3]  # spacing, punctuation and umlauts exactly


def test_tokenizer_training_is_deterministic():
    texts = ["the cat sat on the mat", "a dog sat on a log"] * 30
    assert train_tokenizer(texts, 60) == train_tokenizer(texts, 60)


def test_bleu_on_known_pairs_matches_the_hand_count():
    # hypothesis 7 words, reference 6 (no brevity penalty); clipped n-gram matches 6/7, 4/6, 3/5, 2/4
    score, signature = corpus_bleu(["the cat sat on the red mat"], ["the cat sat on the mat"])
    assert score == pytest.approx(100 * (6 / 7 * 4 / 6 * 3 / 5 * 2 / 4) ** 0.25, abs=1e-9)
    assert "tok:13a" in signature and "nrefs:1" in signature
    # a short hypothesis: brevity penalty exp(1 - 6/4) on matches 4/4, 3/3, 2/2, 1/1
    assert corpus_bleu(["the cat sat on"], ["the cat sat on the mat"])[0] == pytest.approx(
        100 * math.exp(1 - 6 / 4), abs=1e-9)


def test_token_batches_cover_every_pair_once_within_the_budget(tiny_data):
    source, target = tiny_data.train.source, tiny_data.train.target
    batches = token_batches(source, target, 512)
    rows = torch.cat(batches).sort().values
    assert torch.equal(rows, torch.arange(len(source)))
    widths = torch.maximum(lengths(source), lengths(target))
    assert all(len(batch) * int(widths[batch].max()) <= 512 for batch in batches)
    order = [tuple(batch_at(batches, step, 7).tolist()) for step in range(len(batches))]
    assert sorted(order) == sorted(tuple(batch.tolist()) for batch in batches)  # one epoch visits each batch once
    assert batch_at(batches, 3, 7).tolist() == batch_at(batches, 3, 7).tolist()


def _model(config, data, seed=0):
    return TASK.initialize(TASK.build_model(config, data), config, seed).eval()


def test_beam_search_of_width_one_is_greedy(tiny_config, tiny_data):
    model = _model(tiny_config, tiny_data)
    source = tiny_data.test.source[:12]
    assert beam_search(model, source, beam=1) == greedy(model, source)
    assert translate(model, tiny_data.test.source, beam=1)[:12] == greedy(model, source[:, : source.ne(0).sum(1).max()])


def test_wider_beams_find_hypotheses_at_least_as_likely(tiny_config, tiny_data):
    """Beam search scores by mean log-probability; its pick for width 4 never scores below greedy's."""
    torch.manual_seed(0)
    model = _model(tiny_config, tiny_data, seed=3)
    source = tiny_data.test.source[:6]

    def mean_log_prob(row: int, ids: list[int]) -> float:
        target = torch.tensor([[1, *ids, 2]])
        log_probs = torch.log_softmax(model(source[row: row + 1], target[:, :-1]), -1)
        return float(log_probs[0, torch.arange(len(ids) + 1), target[0, 1:]].sum()) / (len(ids) + 1)

    greedy_ids, beam_ids = greedy(model, source), beam_search(model, source, beam=4)
    limits = max_lengths(model, source).tolist()
    for row in range(len(source)):
        if len(greedy_ids[row]) < limits[row] and len(beam_ids[row]) < limits[row]:  # both ended with </s>
            assert mean_log_prob(row, beam_ids[row]) >= mean_log_prob(row, greedy_ids[row]) - 1e-5


def test_prunable_tensors_are_projections_embeddings_and_feed_forward(tiny_config, tiny_data):
    names = list(prunable_weights(_model(tiny_config, tiny_data)))
    assert names[0] == "source_embed.weight"  # shared with the target embedding and the output projection
    for part in ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"):
        assert any(f"encoder.0.self_attn.{part}" in name or f"encoder.0.ffn.{part}" in name for name in names)
        assert any(f"decoder.0.cross_attn.{part}" in name or f"decoder.0.ffn.{part}" in name for name in names)
    assert not any("norm" in name or name.endswith("bias") for name in names)


def test_seeded_init_repeats_and_differs_across_seeds(tiny_config, tiny_data):
    first, again, other = (_model(tiny_config, tiny_data, seed) for seed in (5, 5, 6))
    for (name, a), b, c in zip(first.state_dict().items(), again.state_dict().values(), other.state_dict().values()):
        assert torch.equal(a, b), name
        if name.endswith("proj.weight"):
            assert not torch.equal(a, c), name
