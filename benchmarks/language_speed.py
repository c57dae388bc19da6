"""Training speed of `train_language_model` (masks at ~20% remaining, every bit of bookkeeping) against a plain
PyTorch truncated-BPTT loop of the same model and batch, no masks and no ticketlab. Goal: at most 10% slower.

    python benchmarks/language_speed.py [--text /work/shared/data/tinyshakespeare.txt] [--steps 120] [--threads 1]

Each side runs in its own subprocess (so peak RSS is its own), twice, alternating, and the faster run counts
(the machine may be shared). Tokens/s counts training tokens (batch x BPTT a step) between step `--warmup` and
the last step, timed by snapshot callbacks, so the final evaluation is excluded; the ticketlab side's wall time
with its final evaluation (validation, test, whole training split) is printed too.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_TEXT = "/work/shared/data/tinyshakespeare.txt"


def _setup(args):
    import torch

    from ticketlab.config import DataConfig
    from ticketlab.presets import preset
    from ticketlab.tasks.language import TASK

    torch.set_num_threads(args.threads)
    config = preset("lstm_tiny_shakespeare").replace(**{"train.steps": f"{args.steps}it",
                                                        "train.eval_every": f"{args.steps}it"})
    data = TASK.load_data(DataConfig(name="tiny_shakespeare", data_dir=args.text,
                                     sequence_length=config.data.sequence_length))
    model = TASK.initialize(TASK.build_model(config, data), config, 0)
    return torch, config, data, model


def run_ticketlab(args) -> dict:
    torch, config, data, model = _setup(args)
    from ticketlab.pruning import keep_top, magnitude_scores, prunable_weights, remaining_percent
    from ticketlab.tasks.language import TASK

    weights = prunable_weights(model)
    masks = keep_top(magnitude_scores(weights), {name: round(0.2 * w.numel()) for name, w in weights.items()})
    stamps = {}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as job_dir:
        TASK.train(model, data, config.train, masks=masks, data_seed=0, job_dir=Path(job_dir),
                   snapshot_steps=(args.warmup, args.steps), checkpoint_interval_s=30.0,
                   on_snapshot=lambda step, m, o: stamps.__setitem__(step, time.perf_counter()),
                   on_progress=lambda n: None)
    total = time.perf_counter() - start
    tokens = (args.steps - args.warmup) * config.train.batch_size * config.data.sequence_length
    return {"tokens_per_s": tokens / (stamps[args.steps] - stamps[args.warmup]), "wall_with_final_eval_s": total,
            "remaining_percent": remaining_percent(masks), "peak_rss_mib": _peak_rss_mib()}


def run_plain(args) -> dict:
    torch, config, data, model = _setup(args)
    from torch.nn import functional as F

    batch, bptt = config.train.batch_size, config.data.sequence_length
    length = len(data.train) // batch
    stream = data.train[: length * batch].view(batch, length).t()
    optimizer = torch.optim.Adam(model.parameters(), lr=config.train.lr, fused=True)
    model.train()
    hidden, stamps = None, {}
    for step in range(args.steps):
        inputs = stream[step * bptt : (step + 1) * bptt]
        targets = stream[step * bptt + 1 : (step + 1) * bptt + 1]
        logits, hidden = model(inputs, hidden)
        hidden = [(h.detach(), c.detach()) for h, c in hidden]
        loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.train.clip_grad_norm)
        optimizer.step()
        if step + 1 in (args.warmup, args.steps):
            loss.item()  # the ticketlab loop syncs at the same points
            stamps[step + 1] = time.perf_counter()
    tokens = (args.steps - args.warmup) * batch * bptt
    return {"tokens_per_s": tokens / (stamps[args.steps] - stamps[args.warmup]), "peak_rss_mib": _peak_rss_mib()}


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--text", default=DEFAULT_TEXT, help="Tiny Shakespeare text file")
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--only", choices=("ticketlab", "plain"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.only:
        print(json.dumps((run_ticketlab if args.only == "ticketlab" else run_plain)(args)))
        return
    base = [sys.executable, __file__, "--text", args.text, "--steps", str(args.steps), "--warmup", str(args.warmup),
            "--threads", str(args.threads)]
    runs = {"plain": [], "ticketlab": []}
    for _ in range(args.repeats):
        for side in ("plain", "ticketlab"):
            output = subprocess.run([*base, "--only", side], check=True, capture_output=True, text=True).stdout
            runs[side].append(json.loads(output.strip().splitlines()[-1]))
    best = {side: max(results, key=lambda r: r["tokens_per_s"]) for side, results in runs.items()}
    print("preset lstm_tiny_shakespeare model (1x128 LSTM, BPTT 64, batch 32, Adam, clip 5), "
          f"{args.steps} steps, {args.threads} thread(s)")
    for side, results in runs.items():
        rates = ", ".join(f"{r['tokens_per_s']:,.0f}" for r in results)
        print(f"  {side:9s} tokens/s (runs: {rates}); best {best[side]['tokens_per_s']:,.0f}; "
              f"peak RSS {best[side]['peak_rss_mib']:,.0f} MiB")
    print(f"  ticketlab masks: {best['ticketlab']['remaining_percent']:.1f}% remaining; wall with final "
          f"evaluation {best['ticketlab']['wall_with_final_eval_s']:.1f} s")
    overhead = best["plain"]["tokens_per_s"] / best["ticketlab"]["tokens_per_s"] - 1
    print(f"  overhead of masks + bookkeeping: {100 * overhead:+.1f}% (goal: <= 10%)")
    print("reproduce: python benchmarks/language_speed.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
