"""Speed of the translation task against plain PyTorch loops of the same Transformer, batches and decoding.

Training: `train_translation_model` (masks at ~33% remaining, seeded dropout, every bit of bookkeeping) against a
plain loop (no masks, no ticketlab: the same token-count batches, label-smoothed loss, fused Adam). Target
tokens/s between step `--warmup` and the last step (timed by snapshot callbacks, so the final evaluation is
excluded). Decoding: `translate` (greedy and beam 4, length-sorted batches) against a plain greedy loop over
the same batches, sentences/s on the test split. Goal: masks and bookkeeping cost at most 10%.

    python benchmarks/translation_speed.py [--data-dir /work/shared/data/multi30k] [--steps 60] [--threads 1]

Each side runs in its own subprocess, `--repeats` times alternating, and the faster run counts (the machine
may be shared).

`--decode-only` times greedy decoding of the validation split (1,014 sentences) in one process, by the decoder
before the key/value cache (the whole prefix every step, every sentence of a batch to the limit of the batch's
longest source; written out here) and by `translate`, on the same length batches, for a model fresh from its
seeded init or trained `--train-steps` iterations; it counts the sentences both decode to the same tokens and
those the new per-sentence limit cuts (anything else would be a defect):

    python benchmarks/translation_speed.py --decode-only [--train-steps 30] [--sentences 1014]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_DATA = "/work/shared/data/multi30k"


def _setup(args):
    import torch

    from ticketlab.presets import preset
    from ticketlab.tasks import load_task

    torch.set_num_threads(args.threads)
    config = preset("transformer_multi30k_small").replace(**{
        "data.data_dir": args.data_dir, "train.steps": f"{args.steps}it", "train.eval_every": f"{args.steps}it",
        "data.eval_size": args.sentences, "prune.rewind": "0it", "train.warmup": "1it"})
    task = load_task("translation")
    data = task.load_data(config.data)
    model = task.initialize(task.build_model(config, data), config, 0)
    return torch, config, task, data, model


def _target_tokens(data, batches, steps, warmup, seed):
    from ticketlab.tasks.translation.batches import batch_at

    return sum(int((data.train.target[batch_at(batches, step, seed)][:, 1:] != 0).sum()) for step in range(warmup, steps))


def run_ticketlab(args) -> dict:
    torch, config, task, data, model = _setup(args)
    from ticketlab.pruning import keep_top, magnitude_scores, prunable_weights, remaining_percent
    from ticketlab.tasks.translation.batches import token_batches
    from ticketlab.tasks.translation.decode import translate

    weights = prunable_weights(model)
    masks = keep_top(magnitude_scores(weights), {name: round(0.33 * w.numel()) for name, w in weights.items()})
    stamps = {}
    with tempfile.TemporaryDirectory() as job_dir:
        start = time.perf_counter()
        task.train(model, data, config.train, masks=masks, data_seed=0, job_dir=Path(job_dir),
                   snapshot_steps=(args.warmup, args.steps), checkpoint_interval_s=30.0,
                   on_snapshot=lambda step, m, o: stamps.__setitem__(step, time.perf_counter()))
        wall = time.perf_counter() - start
    batches = token_batches(data.train.source, data.train.target, config.train.batch_size)
    tokens = _target_tokens(data, batches, args.steps, args.warmup, 0)
    decode = {}
    for beam in (1, 4):
        start = time.perf_counter()
        translate(model, data.test.source, beam)
        decode[beam] = len(data.test.source) / (time.perf_counter() - start)
    return {"tokens_per_s": tokens / (stamps[args.steps] - stamps[args.warmup]), "wall_with_final_eval_s": wall,
            "remaining_percent": remaining_percent(masks), "greedy_sentences_per_s": decode[1],
            "beam4_sentences_per_s": decode[4]}


def run_plain(args) -> dict:
    torch, config, task, data, model = _setup(args)
    from torch.nn import functional as F

    from ticketlab.tasks.translation.batches import batch_at, token_batches, trim

    batches = token_batches(data.train.source, data.train.target, config.train.batch_size)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.train.lr, betas=(0.9, config.train.beta2), fused=True)
    model.train()
    stamps = {}
    for step in range(args.steps):
        rows = batch_at(batches, step, 0)
        source, target = trim(data.train.source[rows]), trim(data.train.target[rows])
        loss = F.cross_entropy(model(source, target[:, :-1]).flatten(0, 1), target[:, 1:].flatten(), ignore_index=0,
                               label_smoothing=config.train.label_smoothing)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step + 1 in (args.warmup, args.steps):
            loss.item()
            stamps[step + 1] = time.perf_counter()
    tokens = _target_tokens(data, batches, args.steps, args.warmup, 0)
    model.eval()
    start = time.perf_counter()
    _plain_greedy(torch, model, data.test.source)
    return {"tokens_per_s": tokens / (stamps[args.steps] - stamps[args.warmup]),
            "greedy_sentences_per_s": len(data.test.source) / (time.perf_counter() - start)}


def _plain_greedy(torch, model, source, batch_tokens=4096):
    """Argmax decoding in length-sorted batches, written out without ticketlab's decoder."""
    lengths = (source != 0).sum(1)
    order = torch.argsort(lengths, stable=True)
    outputs = []
    with torch.no_grad():
        start = 0
        while start < len(order):
            count = max(1, batch_tokens // int(lengths[order[min(len(order), start + 64) - 1]]))
            rows = order[start: start + count]
            outputs.append(_greedy_without_cache(torch, model, source[rows][:, : int(lengths[rows].max())]))
            start += count
    return outputs


def _greedy_without_cache(torch, model, batch):
    """Argmax tokens of one batch of sources (with the leading <s>), each step running the whole prefix through
    the decoder, every row up to floor(1.5 x the batch's longest source) + 10 tokens: the baseline decoders."""
    memory, padding = model.encode(batch)
    tokens = torch.ones((len(batch), 1), dtype=torch.long)
    done = torch.zeros(len(batch), dtype=torch.bool)
    for _ in range(int(1.5 * batch.shape[1]) + 10):
        logits = model.decode(tokens, memory, padding, last_only=True)[:, -1]
        logits[:, 0] = -float("inf")
        choice = logits.argmax(-1).masked_fill(done, 0)
        tokens = torch.cat([tokens, choice[:, None]], 1)
        done |= choice == 2
        if bool(done.all()):
            break
    return tokens


def run_decode_comparison(args) -> None:
    import torch

    from ticketlab.presets import preset
    from ticketlab.tasks import load_task
    from ticketlab.tasks.translation.decode import max_lengths, translate
    from ticketlab.tasks.translation.evaluate import corpus_bleu
    from ticketlab.tasks.translation.tokenizer import decode, load_tokenizer

    torch.set_num_threads(args.threads)
    config = preset("transformer_multi30k_small").replace(**{"data.data_dir": args.data_dir})
    task = load_task("translation")
    data = task.load_data(config.data)
    model = task.initialize(task.build_model(config, data), config, 0)
    if args.train_steps:  # the preset's first iterations: its batches, warmup and label smoothing, no masks
        from ticketlab.config import parse_step
        from ticketlab.tasks.translation.batches import batch_at, steps_per_epoch, token_batches, trim
        from ticketlab.training.optim import learning_rate_at

        per_epoch = steps_per_epoch(data, config.train)
        total = parse_step(config.train.steps, per_epoch)
        batches = token_batches(data.train.source, data.train.target, config.train.batch_size)
        optimizer = torch.optim.Adam(model.parameters(), lr=config.train.lr, betas=(0.9, config.train.beta2))
        model.train()
        for step in range(args.train_steps):
            for group in optimizer.param_groups:
                group["lr"] = learning_rate_at(step, config.train, total, per_epoch)
            rows = batch_at(batches, step, 0)
            source, target = trim(data.train.source[rows]), trim(data.train.target[rows])
            loss = torch.nn.functional.cross_entropy(model(source, target[:, :-1]).flatten(0, 1),
                                                     target[:, 1:].flatten(), ignore_index=0,
                                                     label_smoothing=config.train.label_smoothing)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    source = data.val.source[: args.sentences]  # default (None): all 1,014
    start = time.perf_counter()
    before = _greedy_before_the_cache(torch, model, source)
    old_s = time.perf_counter() - start
    start = time.perf_counter()
    after = translate(model, source)
    new_s = time.perf_counter() - start
    limits = max_lengths(model, source).tolist()
    same = sum(old == new for old, new in zip(before, after))
    cut = sum(old != new and len(old) >= limit and new == old[:limit] for old, new, limit in zip(before, after, limits))
    mean = lambda outputs: sum(map(len, outputs)) / len(outputs)  # noqa: E731
    print(f"greedy decoding of {len(source)} validation sentences, transformer_multi30k_small "
          f"{'fresh from init' if not args.train_steps else f'after {args.train_steps} iterations'}, "
          f"{args.threads} thread(s)")
    print(f"  before (no cache, batch limit): {old_s:.1f} s, {mean(before):.1f} subwords a sentence")
    print(f"  now (cache, own limit, finished leave): {new_s:.1f} s, {mean(after):.1f} subwords a sentence "
          f"({old_s / new_s:.1f}x faster)")
    print(f"  same tokens: {same}; cut by the per-sentence limit: {cut}; other differences: "
          f"{len(source) - same - cut}")
    tokenizer = load_tokenizer(data.tokenizer_json)
    references = data.val.references[: len(source)]
    bleu = [corpus_bleu(decode(tokenizer, outputs), references)[0] for outputs in (before, after)]
    print(f"  validation BLEU before {bleu[0]:.2f}, now {bleu[1]:.2f}")


def _greedy_before_the_cache(torch, model, source):
    """The decoder as it was before the key/value cache, on `translate`'s length batches: each step runs the
    whole prefix through the decoder, and every sentence of a batch may run to floor(1.5 x the batch's longest
    source) + 10 tokens."""
    from ticketlab.tasks.translation.decode import DECODE_BATCH_TOKENS, length_batches

    source_lengths = (source != 0).sum(1).clamp(min=1)
    outputs = [None] * len(source)
    with torch.no_grad():
        for rows in length_batches(source_lengths, DECODE_BATCH_TOKENS):
            tokens = _greedy_without_cache(torch, model, source[rows][:, : int(source_lengths[rows].max())])
            for row, ids in zip(rows, tokens[:, 1:].tolist()):
                ends = [i for i, token in enumerate(ids) if token in (0, 2)]
                outputs[row] = ids[: ends[0]] if ends else ids
    return outputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=DEFAULT_DATA, help="directory of the Multi30k files")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--sentences", type=int, help="test sentences decoded (default 300; --decode-only: all)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--only", choices=("ticketlab", "plain"), help=argparse.SUPPRESS)
    parser.add_argument("--decode-only", action="store_true",
                        help="time greedy decoding of the validation split before and after the key/value cache")
    parser.add_argument("--train-steps", type=int, default=0, help="with --decode-only: iterations trained first")
    args = parser.parse_args()
    if args.decode_only:
        run_decode_comparison(args)
        return
    args.sentences = args.sentences or 300
    if args.only:
        print(json.dumps((run_ticketlab if args.only == "ticketlab" else run_plain)(args)))
        return
    base = [sys.executable, __file__, "--data-dir", args.data_dir, "--steps", str(args.steps), "--warmup",
            str(args.warmup), "--threads", str(args.threads), "--sentences", str(args.sentences)]
    runs = {"plain": [], "ticketlab": []}
    for _ in range(args.repeats):
        for side in ("plain", "ticketlab"):
            output = subprocess.run([*base, "--only", side], check=True, capture_output=True, text=True).stdout
            runs[side].append(json.loads(output.strip().splitlines()[-1]))
    best = {side: max(results, key=lambda r: r["tokens_per_s"]) for side, results in runs.items()}
    fastest_decode = {side: max(r["greedy_sentences_per_s"] for r in results) for side, results in runs.items()}
    print(f"preset transformer_multi30k_small (2+2 x 128, 2,048 tokens a batch), {args.steps} steps, "
          f"{args.sentences} test sentences, {args.threads} thread(s)")
    for side, results in runs.items():
        rates = ", ".join(f"{r['tokens_per_s']:,.0f}" for r in results)
        print(f"  {side:9s} training target tokens/s (runs: {rates}); best {best[side]['tokens_per_s']:,.0f}; "
              f"greedy decoding {fastest_decode[side]:,.1f} sentences/s")
    tl = best["ticketlab"]
    print(f"  ticketlab: masks {tl['remaining_percent']:.1f}% remaining; beam-4 decoding "
          f"{max(r['beam4_sentences_per_s'] for r in runs['ticketlab']):,.1f} sentences/s; wall with final "
          f"evaluation {tl['wall_with_final_eval_s']:.1f} s")
    train_overhead = best["plain"]["tokens_per_s"] / tl["tokens_per_s"] - 1
    decode_overhead = fastest_decode["plain"] / fastest_decode["ticketlab"] - 1
    print(f"  overhead of masks + bookkeeping: training {100 * train_overhead:+.1f}%, greedy decoding "
          f"{100 * decode_overhead:+.1f}% (goal: <= 10%)")
    print("reproduce: python benchmarks/translation_speed.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
