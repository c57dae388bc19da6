"""Channel tickets trained as compact networks (`--kernels compact`) against the masked full network (dense).

1. One training step (forward, backward, SGD with momentum; batch 60) of Conv-2 and Conv-4 on CIFAR-sized images
   and ResNet-20 (width 16), at 100%, 51%, 26%, 13% and 6.9% of the channels (random channel masks), masked dense
   against compact, interleaved, best of `--rounds` rounds in CPU seconds of this process.
2. End to end: channel IMP of Conv-2 on Fashion-MNIST (or random images of its shape without the dataset), one
   trial, `--levels` levels at prune.rate 0.5, both kernels in the same run one after the other; wall time per
   level, each level's early-stop iteration and test accuracy side by side, and the mask entries where the two
   runs' masks differ. Then (`--drift`) the level-1 job from its start on 1 thread, 2 threads and compact: how far
   training carries a change of summation order (kernels, or just the thread count).

Reproduce:  OMP_NUM_THREADS=1 python benchmarks/channel_compact_speed.py --threads 1
            python benchmarks/channel_compact_speed.py --quick   (seconds; the test suite runs it)
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `python benchmarks/...` from anywhere
from ticketlab.api import find_tickets  # noqa: E402
from ticketlab.config import DataConfig, ExperimentConfig, ModelConfig, PruneConfig, TrainConfig  # noqa: E402
from ticketlab.data.splits import make_splits  # noqa: E402
from ticketlab.config.experiment import load_config  # noqa: E402
from ticketlab.lottery.compact_training import compact_copy, train_as_compact  # noqa: E402
from ticketlab.lottery.workers import model_factory  # noqa: E402
from ticketlab.store import load_tensors  # noqa: E402
from ticketlab.tasks import load_task  # noqa: E402
from ticketlab.tasks.base import load_task_data  # noqa: E402
from ticketlab.models import build_model, initialize  # noqa: E402
from ticketlab.pruning import prunable_weights  # noqa: E402
from ticketlab.pruning.channels import channel_groups, channel_masks, keep_channels, random_channel_scores  # noqa: E402

NETWORKS = {"conv2": ((3, 32, 32), {}), "conv4": ((3, 32, 32), {}), "resnet20": ((3, 32, 32), {})}
FRACTIONS = (1.0, 0.51, 0.26, 0.13, 0.069)


def channel_pruned(name: str, shape, fraction: float, seed: int = 0, **kwargs):
    """`name` with a random `fraction` of its channels kept (the rest masked to 0), its masks and the kept channels
    per group."""
    model = initialize(build_model(name, shape, 10, **kwargs), "kaiming_normal", seed)
    groups = channel_groups(model)
    total = sum(group.size for group in groups)
    kept = keep_channels(random_channel_scores(groups, seed), max(len(groups), round(fraction * total)))
    masks = channel_masks(model, groups, kept, prunable_weights(model))
    with torch.no_grad():
        for parameter_name, parameter in model.named_parameters():
            if parameter_name in masks:
                parameter.mul_(masks[parameter_name])
    return model, masks, kept


def step_seconds(models: dict, inputs, labels, rounds: int, steps: int) -> dict[str, float]:
    """Best CPU seconds per training step of each model, the models interleaved round by round."""
    optimizers = {key: torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9) for key, model in models.items()}
    best = dict.fromkeys(models, float("inf"))
    for _ in range(rounds):
        for key, model in models.items():
            started = time.process_time()
            for _ in range(steps):
                optimizers[key].zero_grad()
                F.cross_entropy(model(inputs), labels).backward()
                optimizers[key].step()
            best[key] = min(best[key], (time.process_time() - started) / steps)
    return best


def step_table(networks, fractions, rounds: int, steps: int, batch: int) -> list[dict]:
    rows = []
    for name in networks:
        shape, kwargs = NETWORKS[name]
        generator = torch.Generator().manual_seed(0)
        inputs = torch.randn(batch, *shape, generator=generator)
        labels = torch.randint(0, 10, (batch,), generator=generator)
        for fraction in fractions:
            model, masks, _ = channel_pruned(name, shape, fraction, **kwargs)
            small = compact_copy(model, masks)
            compact = small.model if small is not None else copy.deepcopy(model)
            seconds = step_seconds({"dense": model, "compact": compact}, inputs, labels, rounds, steps)
            parameters = sum(parameter.numel() for parameter in compact.parameters())
            rows.append({"network": name, "channels_percent": round(100 * fraction, 1),
                         "parameters_percent": round(100 * parameters / sum(p.numel() for p in model.parameters()), 1),
                         "dense_ms": round(1e3 * seconds["dense"], 2), "compact_ms": round(1e3 * seconds["compact"], 2),
                         "speedup": round(seconds["dense"] / seconds["compact"], 2)})
            print(f"  {name:9s} channels {100 * fraction:5.1f}%  dense {1e3 * seconds['dense']:8.2f} ms  "
                  f"compact {1e3 * seconds['compact']:8.2f} ms  {seconds['dense'] / seconds['compact']:6.2f}x",
                  flush=True)
    return rows


def end_to_end(levels: int, steps: int, width: int | None, root: Path, quick: bool) -> list[dict]:
    """Channel IMP of Conv-2, dense then compact kernels; per level: wall seconds and the early-stop numbers."""
    data, data_config = None, DataConfig(name="fashion_mnist")
    if quick or not Path("/usr/share/datasets/fashion-mnist").exists():
        generator = torch.Generator().manual_seed(0)
        templates = torch.rand(10, 1, 28, 28, generator=generator)
        labels = torch.randint(0, 10, (1200,), generator=generator)
        images = templates[labels] + 0.5 * torch.rand(1200, 1, 28, 28, generator=generator)
        data = make_splits(images[:1000], labels[:1000], images[1000:], labels[1000:], validation_size=100,
                           num_classes=10)
    rows, run_dirs = {}, {}
    for kernels in ("dense", "compact"):
        config = ExperimentConfig(
            data=data_config, model=ModelConfig(name="conv2", width=width),
            train=TrainConfig(optimizer="adam", lr=2e-4, batch_size=60, steps=f"{steps}it",
                              eval_every=f"{max(1, steps // 4)}it", kernels=kernels),
            prune=PruneConfig(unit="channel", rate=0.5, levels=levels),
            variants=("iterative_reset",), trials=1)
        started = time.time()
        run = find_tickets(config, root=root / kernels, data=data, progress=False, report=False)
        print(f"  {kernels}: {time.time() - started:.1f} s", flush=True)
        run_dirs[kernels] = run.run_dir
        for path in sorted(run.run_dir.glob("trial_0/level_*/*/result.json")):
            result = json.loads(path.read_text())
            rows.setdefault(int(result["level"]), {})[kernels] = result
    table = []
    for level, pair in sorted(rows.items()):
        dense, compact = pair["dense"], pair["compact"]
        table.append({"level": level, "weights_remaining_percent": round(dense["weights_remaining_percent"], 2),
                      "dense_s": round(float(dense["wall_time_s"]), 2), "compact_s": round(float(compact["wall_time_s"]), 2),
                      "speedup": round(float(dense["wall_time_s"]) / float(compact["wall_time_s"]), 2),
                      "dense_early_stop": int(dense["early_stop_iteration"]),
                      "compact_early_stop": int(compact["early_stop_iteration"]),
                      "dense_accuracy": round(float(dense["early_stop_test_accuracy"]), 4),
                      "compact_accuracy": round(float(compact["early_stop_test_accuracy"]), 4),
                      "mask_entries_differing": _mask_difference(run_dirs, level)})
    return table, run_dirs, data


def _job(run_dir: Path, level: int) -> Path:
    return run_dir / f"trial_0/level_{level:02d}" / ("dense" if level == 0 else "iterative_reset")


def _mask_difference(run_dirs: dict[str, Path], level: int) -> int:
    """Entries where the dense and compact runs' masks of `level` differ (a changed channel ranking)."""
    if level == 0:
        return 0
    masks = {kernels: load_tensors(_job(run_dir, level) / "mask.safetensors") for kernels, run_dir in run_dirs.items()}
    return sum(int((masks["dense"][name] != masks["compact"][name]).sum()) for name in masks["dense"])


def drift(run_dir: Path, steps: int, data=None) -> dict[str, float]:
    """The largest weight difference after `steps` iterations of the level-1 job from its start, trained on the
    masked dense network on 1 and on 2 threads and compact on 1 thread: how far training carries a change of
    summation order, for a change of kernels and for a change of thread count."""
    config = load_config(run_dir / "config.json")
    task = load_task(config.task)
    data = data if data is not None else load_task_data(task, config)
    job = _job(run_dir, 1)
    masks = {name: mask.float() for name, mask in load_tensors(job / "mask.safetensors").items()}
    start = load_tensors(job / "weights_init.safetensors")
    train = dataclasses.replace(config.train, steps=f"{steps}it", eval_every=f"{steps}it")
    trained = {}
    threads = torch.get_num_threads()
    for label, count, kernels in (("dense, 1 thread", 1, "dense"), ("dense, 2 threads", 2, "dense"),
                                  ("compact, 1 thread", 1, "compact")):
        torch.set_num_threads(count)
        model = model_factory(config, data, None)(0)
        model.load_state_dict(start)
        train_as_compact(task.train, model, data, dataclasses.replace(train, kernels=kernels), masks=masks,
                         data_seed=1)
        trained[label] = {name: value.detach().clone() for name, value in model.state_dict().items()
                          if value.is_floating_point() and "running" not in name}
    torch.set_num_threads(threads)
    reference = trained.pop("dense, 1 thread")
    return {label: max(float((state[name] - reference[name]).abs().max()) for name in state)
            for label, state in trained.items()}


def markdown(rows: list[dict]) -> str:
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(str(row[key]) for key in keys) + " |" for row in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--levels", type=int, default=5)
    parser.add_argument("--steps", type=int, default=1000, help="iterations per level of the end-to-end run")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the script runs (seconds)")
    parser.add_argument("--drift", type=int, default=200, metavar="STEPS",
                        help="then train the level-1 job STEPS iterations on 1 thread, 2 threads and compact and "
                             "report how far the weights end apart (0: skip)")
    parser.add_argument("--out", type=Path, default=None, help="directory for the runs (default: a temporary one)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    command = "python benchmarks/channel_compact_speed.py " + " ".join(sys.argv[1:] if argv is None else argv)
    load = os.getloadavg()[0]
    print(f"# {command}\n# torch {torch.__version__}, {args.threads} thread(s), load {load:.1f}")
    if args.quick:
        networks, fractions, rounds, steps, levels, width, train_steps = ("conv2",), (1.0, 0.26), 1, 1, 2, 4, 8
    else:
        networks, fractions, rounds, steps = tuple(NETWORKS), FRACTIONS, args.rounds, 3
        levels, width, train_steps = args.levels, None, args.steps
    print("## One training step (batch 60)")
    steps_rows = step_table(networks, fractions, rounds, steps, 60)
    print(markdown(steps_rows))
    print("\n## Channel IMP of Conv-2 end to end")
    with tempfile.TemporaryDirectory() as scratch:
        root = args.out or Path(scratch)
        table, run_dirs, data = end_to_end(levels, train_steps, width, root, args.quick)
        print(markdown(table))
        drift_steps = 4 if args.quick else args.drift
        if drift_steps:
            print(f"\n## Largest weight difference from the masked dense network on 1 thread after {drift_steps} "
                  "iterations of the level-1 job")
            for label, difference in drift(run_dirs["dense"], drift_steps, data).items():
                print(f"  {label}: {difference:.3g}")
    dense = sum(row["dense_s"] for row in table)
    compact = sum(row["compact_s"] for row in table)
    print(f"\ntotal: dense {dense:.1f} s, compact {compact:.1f} s ({dense / compact:.2f}x); "
          f"load {os.getloadavg()[0]:.1f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
