"""Speed of masked fine-tuning of a pre-trained transformer through ticketlab (the glue task's `train`: masks at
~20% remaining, AdamW with weight decay, seeded dropout, metrics, checkpoints) against a plain transformers
fine-tuning loop (AdamW on the same model and the same batches, no masks). Goal: at most 10% slower.

    python benchmarks/hf_finetune_speed.py [--steps 60] [--threads 1] [--device cpu]

The model is a BERT of 4 layers, width 256, 4 heads, FFN 1024, 2,000-word vocabulary (random weights saved with
save_pretrained, then loaded from that directory, as a pre-trained model is); the data is a generated SST-2-layout
file of 2,048 sentences of 8-48 words (batch 32). The plain loop runs twice: as a transformers user runs it, and
with the allocator setting every ticketlab trainer makes (`ticketlab.training.allocator.keep_freed_memory`: freed
memory stays in the process instead of being page-faulted back every step; on a crowded 2-core machine the plain
loop without it once ran at half ticketlab's speed, on a quieter one within noise of it); the overhead goal is measured against the latter, so it counts the masks and the
bookkeeping alone. Each side runs in its own subprocess, `--repeats` times, alternating, and the faster run counts
(the machine may be shared). Examples/s counts training examples between
step `--warmup` and the last step, so loading and the final evaluation are excluded. Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path


SIDES = ("plain", "plain_kept", "ticketlab")  # plain_kept: the plain loop with ticketlab's allocator setting


def write_inputs(root: Path, vocab: int = 2000, examples: int = 2048, seed: int = 0) -> tuple[Path, Path]:
    """A random-weight BERT with a word-level tokenizer in root/bert, an SST-2-layout train.tsv / dev.tsv in
    root/sst2."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import BertConfig, BertForMaskedLM, PreTrainedTokenizerFast

    words = [f"w{index:04d}" for index in range(vocab - 5)]
    table = {token: index for index, token in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + words)}
    backend = Tokenizer(models.WordLevel(table, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]",
                                        cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
    config = BertConfig(vocab_size=len(table), hidden_size=256, num_hidden_layers=4, num_attention_heads=4,
                        intermediate_size=1024, max_position_embeddings=128)
    torch.manual_seed(seed)
    BertForMaskedLM(config).save_pretrained(root / "bert")
    tokenizer.save_pretrained(root / "bert")
    rng = random.Random(seed)
    (root / "sst2").mkdir()
    for split, count in (("train", examples), ("dev", 256)):
        rows = ["sentence\tlabel"]
        for _ in range(count):
            label = rng.random() < 0.5
            sentence = [rng.choice(words[100:]) for _ in range(rng.randint(8, 48))]
            if label:
                sentence[rng.randrange(len(sentence))] = rng.choice(words[:100])
            rows.append(f"{' '.join(sentence)}\t{int(label)}")
        (root / "sst2" / f"{split}.tsv").write_text("\n".join(rows) + "\n")
    return root / "bert", root / "sst2"


def _setup(args):
    import torch

    from ticketlab.config import ExperimentConfig
    from ticketlab.tasks import load_task
    from ticketlab.tasks.base import load_task_data

    torch.set_num_threads(args.threads)
    task = load_task("glue")
    config = ExperimentConfig().replace(**{
        "task": "glue", "model.name": "pretrained", "data.name": "sst2", "data.data_dir": args.data,
        "data.validation_size": 256, "glue.model_dir": args.model, "glue.max_length": 64,
        "train.optimizer": "adamw", "train.lr": 2e-5, "train.weight_decay": 0.01, "train.batch_size": 32,
        "train.steps": f"{args.steps}it", "train.eval_every": f"{args.steps}it"})
    data = load_task_data(task, config).to(args.device)
    model = task.initialize(task.build_model(config, data), config, 0).to(args.device)
    return torch, task, config, data, model


def _sync(torch, device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def run_ticketlab(args) -> dict:
    torch, task, config, data, model = _setup(args)
    from ticketlab.pruning import keep_top, magnitude_scores, remaining_percent

    weights = task.prunable(model)
    masks = keep_top(magnitude_scores(weights), {name: round(0.2 * w.numel()) for name, w in weights.items()})
    stamps = {}

    def stamp(step, *_):
        _sync(torch, args.device)
        stamps[step] = time.perf_counter()

    with tempfile.TemporaryDirectory() as job_dir:
        task.train(model, data, config.train, masks=masks, data_seed=0, job_dir=Path(job_dir),
                   snapshot_steps=(args.warmup, args.steps), checkpoint_interval_s=30.0, on_snapshot=stamp,
                   on_progress=lambda n: None)
    examples = (args.steps - args.warmup) * config.train.batch_size
    return {"examples_per_s": examples / (stamps[args.steps] - stamps[args.warmup]),
            "remaining_percent": remaining_percent(masks)}


def run_plain(args, keep_memory: bool = False) -> dict:
    """transformers as its users train: model(**batch, labels=...).loss, backward, AdamW step, zero_grad."""
    if keep_memory:
        from ticketlab.training.allocator import keep_freed_memory

        keep_freed_memory()
    torch, task, config, data, model = _setup(args)
    from ticketlab.tasks.hf.train import glue_batch

    batches = [glue_batch(data, step, config.train.batch_size, 0) for step in range(args.steps)]  # same batches
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.train.lr, weight_decay=config.train.weight_decay,
                                  fused=True)
    model.train()
    stamps = {}
    for step, (features, labels) in enumerate(batches):
        loss = model(**features, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step + 1 in (args.warmup, args.steps):
            loss.item()
            _sync(torch, args.device)
            stamps[step + 1] = time.perf_counter()
    examples = (args.steps - args.warmup) * config.train.batch_size
    return {"examples_per_s": examples / (stamps[args.steps] - stamps[args.warmup])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--only", choices=SIDES, help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.only:
        run = {"ticketlab": run_ticketlab, "plain": run_plain, "plain_kept": lambda a: run_plain(a, True)}[args.only]
        print(json.dumps(run(args)))
        return
    with tempfile.TemporaryDirectory() as root:
        model_dir, data_dir = write_inputs(Path(root))
        base = [sys.executable, __file__, "--steps", str(args.steps), "--warmup", str(args.warmup), "--threads",
                str(args.threads), "--device", args.device, "--model", str(model_dir), "--data", str(data_dir)]
        runs = {side: [] for side in SIDES}
        for _ in range(args.repeats):
            for side in SIDES:
                output = subprocess.run([*base, "--only", side], check=True, capture_output=True, text=True).stdout
                runs[side].append(json.loads(output.strip().splitlines()[-1]))
    best = {side: max(results, key=lambda r: r["examples_per_s"]) for side, results in runs.items()}
    print(f"BERT 4x256 (4 heads, FFN 1024, vocab 2,000), SST-2 layout, batch 32, max 64 tokens, AdamW wd 0.01, "
          f"{args.steps} steps, device {args.device}, {args.threads} thread(s)")
    for side, results in runs.items():
        rates = ", ".join(f"{r['examples_per_s']:,.1f}" for r in results)
        print(f"  {side:10s} examples/s (runs: {rates}); best {best[side]['examples_per_s']:,.1f}")
    print(f"  ticketlab masks: {best['ticketlab']['remaining_percent']:.1f}% of the pruned tensors remaining")
    overhead = best["plain_kept"]["examples_per_s"] / best["ticketlab"]["examples_per_s"] - 1
    print(f"  overhead of masks + bookkeeping (against plain_kept): {100 * overhead:+.1f}% (goal: <= 10%)")
    against_default = best["plain"]["examples_per_s"] / best["ticketlab"]["examples_per_s"] - 1
    print(f"  against the plain loop with glibc's default allocator: {100 * against_default:+.1f}%")
    print("reproduce: python benchmarks/hf_finetune_speed.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
