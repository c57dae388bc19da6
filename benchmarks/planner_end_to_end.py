"""End to end: the Fashion-MNIST seed experiment with the population planner vs `--population 1`, same run.

LeNet-300-100, iterative reset + iterative reinit + random pruning, evaluation every 100 iterations. The issue's
full size is 5 trials x 15 levels x 4,000 iterations; `--trials/--levels/--steps` scale it down. Both paths
run in fresh run directories; the plain path uses `--workers` single-threaded processes (its best setting).
Prints both wall times, the speed-up and the largest per-row differences between the two results.csv files.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import sys
import tempfile
import time
from pathlib import Path

import ticketlab


def _rows(path: Path) -> dict[tuple, dict]:
    with open(path) as handle:
        return {(row["variant"], row["trial"], row["level"]): row for row in csv.DictReader(handle)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--levels", type=int, default=15)
    parser.add_argument("--steps", default="4000it")
    parser.add_argument("--workers", type=int, default=2, help="processes for the --population 1 path")
    args = parser.parse_args()
    config = ticketlab.preset("lenet_fashion_mnist_short").replace(
        trials=args.trials,
        variants=["iterative_reset", "iterative_reinit", "random_pruning"],
        **{"train.steps": args.steps, "prune.levels": args.levels},
    )
    root = Path(tempfile.mkdtemp(prefix="ticketlab-planner-"))
    timings, csvs = {}, {}
    for label, options in (("population", {"population": None}), ("plain", {"population": 1, "workers": args.workers})):
        started = time.time()
        result = ticketlab.find_tickets(config, root=root / label, report=False, **options)
        timings[label] = time.time() - started
        csvs[label] = _rows(result.results_csv)
        print(f"{label:10s} wall time {timings[label]:8.1f} s", flush=True)
    accuracy_gap = max(
        abs(float(csvs["population"][key]["early_stop_test_accuracy"]) - float(row["early_stop_test_accuracy"]))
        for key, row in csvs["plain"].items()
    )
    final_gap = max(
        abs(float(csvs["population"][key]["final_test_accuracy"]) - float(row["final_test_accuracy"]))
        for key, row in csvs["plain"].items()
    )
    same_iteration = sum(
        csvs["population"][key]["early_stop_iteration"] == row["early_stop_iteration"] for key, row in csvs["plain"].items()
    )
    identical = sum(csvs["population"][key] == row for key, row in csvs["plain"].items())
    print(f"speed-up (plain / population): {timings['plain'] / timings['population']:.2f}x")
    print(f"rows: {len(csvs['plain'])}, identical rows: {identical}, same early-stop iteration: {same_iteration}")
    print(f"largest |early-stop test accuracy difference|: {100 * accuracy_gap:.2f} points; "
          f"final test accuracy: {100 * final_gap:.2f} points")
    print("reproduce: python benchmarks/planner_end_to_end.py " + " ".join(sys.argv[1:]))
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
