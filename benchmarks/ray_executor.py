"""The Fashion-MNIST seed experiment on the Ray executor vs the local planner: same run, wall times, and whether
the two results.csv files agree.

LeNet-300-100, iterative reset + iterative reinit + random pruning (as `benchmarks/planner_end_to_end.py`),
scaled by `--trials/--levels/--steps` to fit a few minutes on a small machine. Two pairings, each in fresh run
directories:

- populations (`--population` auto): the local planner in this process vs the same plan as Ray tasks;
- one job at a time (`--population 1`): `--workers N` local processes vs Ray tasks.

Every path trains with one thread per task/process (this process too), so equal results are expected bit for
bit; the README's tolerance between different population sizes or thread counts (early-stop test accuracy within
~1.2 points) is the bound that would apply otherwise. Ray runs on a local cluster of `--cpus` CPUs started once
(its start-up time is printed separately); `--ray-address` uses an existing cluster instead.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

import ticketlab


def _rows(path: Path) -> dict[tuple, dict]:
    with open(path) as handle:
        return {(row["variant"], row["trial"], row["level"]): row for row in csv.DictReader(handle)}


def _compare(a: dict, b: dict) -> str:
    gap = max(abs(float(a[key]["early_stop_test_accuracy"]) - float(row["early_stop_test_accuracy"]))
              for key, row in b.items())
    identical = sum(a.get(key) == row for key, row in b.items())
    return f"rows {len(b)}, identical {identical}, largest |early-stop test accuracy difference| {100 * gap:.2f} points"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=2)
    parser.add_argument("--levels", type=int, default=4)
    parser.add_argument("--steps", default="1000it")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray cluster, and local --workers")
    parser.add_argument("--ray-address", default=None)
    parser.add_argument("--ray-first", action="store_true", help="run each pairing's Ray path before the local one "
                        "(on a shared machine, to see how much the order and the load move the wall times)")
    parser.add_argument("--root", default=None, help="where the run directories go (default: a temporary folder)")
    parser.add_argument("--preset", default="lenet_fashion_mnist_short",
                        help="the experiment's preset (mnist1d: generated data, for a machine without datasets)")
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto (Ray tasks on cuda ask for num_gpus=1)")
    parser.add_argument("--gpus", type=int, default=None, help="GPUs of the local Ray cluster (default: Ray detects)")
    parser.add_argument("--pairings", default="populations,one at a time",
                        help="comma-separated: which of the two pairings to run")
    args = parser.parse_args()
    if not args.pairings or set(args.pairings.split(",")) - {"populations", "one at a time"}:
        parser.error(f"--pairings {args.pairings!r}: comma-separated of 'populations', 'one at a time'")
    import ray

    torch.set_num_threads(1)
    config = ticketlab.preset(args.preset).replace(
        trials=args.trials,
        variants=["iterative_reset", "iterative_reinit", "random_pruning"],
        **{"train.steps": args.steps, "prune.levels": args.levels},
    )
    root = Path(args.root) if args.root else Path(tempfile.mkdtemp(prefix="ticketlab-ray-"))
    started = time.time()
    if args.ray_address:
        ray.init(address=args.ray_address)
    else:
        ray.init(num_cpus=args.cpus, num_gpus=args.gpus, include_dashboard=False, logging_level="warning")
    print(f"ray start-up {time.time() - started:.1f} s ({ray.cluster_resources().get('CPU', 0):.0f} CPUs, "
          f"{ray.cluster_resources().get('GPU', 0):.0f} GPUs; --device {args.device})", flush=True)
    runs = (
        ("local planner", "populations", {"population": None}),
        ("ray", "populations", {"population": None, "executor": "ray"}),
        (f"local --workers {args.cpus}", "one at a time", {"population": 1, "workers": args.cpus}),
        ("ray", "one at a time", {"population": 1, "executor": "ray"}),
    )
    if args.ray_first:
        runs = (runs[1], runs[0], runs[3], runs[2])
    pairings = args.pairings.split(",")
    runs = tuple(run for run in runs if run[1] in pairings)
    results: dict[tuple, dict] = {}
    print("| path | jobs | wall time (s) |\n|---|---|---:|")
    for index, (label, kind, options) in enumerate(runs):
        started = time.time()
        result = ticketlab.find_tickets(config, root=root / str(index), report=False, progress=False,
                                        device=args.device, **options)
        print(f"| {label} | {kind} | {time.time() - started:.1f} |", flush=True)
        results[(label.split()[0], kind)] = _rows(result.results_csv)
    for kind in pairings:
        print(f"{kind}: ray vs local: {_compare(results[('local', kind)], results[('ray', kind)])}")
    print(f"config: {args.trials} trials x {args.levels} levels x {args.steps}, 3 variants "
          f"({len(results[('ray', pairings[0])])} rows)")
    print("reproduce: python benchmarks/ray_executor.py " + " ".join(sys.argv[1:]))
    ray.shutdown()
    if not args.root:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
