"""Seed experiment on real Fashion-MNIST: LeNet-300-100, winning tickets vs random reinit vs random pruning.

Short protocol: 4,000 iterations per level, 15 levels (to ~3.6% weights remaining), 2+ trials.
Prints the summary table, wall time and the command that reproduces it.
"""

from __future__ import annotations

import argparse
import sys
import time

import ticketlab
from ticketlab.report import read_results, summarize_results
from ticketlab.report.table import summary_text_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=2)
    parser.add_argument("--steps", default="4000it")
    parser.add_argument("--levels", type=int, default=15)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--variants", default="iterative_reset,iterative_reinit,random_pruning")
    parser.add_argument("--root", default="runs/benchmarks")
    args = parser.parse_args()
    config = ticketlab.preset("lenet_fashion_mnist_short").replace(
        trials=args.trials, variants=args.variants.split(","),
        **{"train.steps": args.steps, "prune.levels": args.levels},
    )
    started = time.time()
    result = ticketlab.find_tickets(config, root=args.root, workers=args.workers)
    wall = time.time() - started
    summary = summarize_results(read_results(result.results_csv))
    print(summary_text_table(summary))
    dense = [row for row in summary if row["level"] == 0][0]
    print(f"\ndense early-stop test accuracy: {100 * dense['early_stop_test_accuracy_mean']:.2f}%")
    for row in summary:
        if row["variant"] == "iterative_reset" and row["level"] > 0:
            reinit = [r for r in summary if r["variant"] == "iterative_reinit" and r["level"] == row["level"]]
            gap = (row["early_stop_test_accuracy_mean"] - reinit[0]["early_stop_test_accuracy_mean"]) * 100 if reinit else float("nan")
            print(f"level {row['level']:2d}  {row['weights_remaining_percent']:6.2f}% remaining  "
                  f"ticket {100 * row['early_stop_test_accuracy_mean']:.2f}% "
                  f"(min {100 * row['early_stop_test_accuracy_min']:.2f})  ticket - reinit {gap:+.2f} pts  "
                  f"early stop {row['early_stop_iteration_mean']:.0f} (dense {dense['early_stop_iteration_mean']:.0f})")
    print(f"\nwall time: {wall:.0f} s (a re-run of a finished experiment trains nothing)")
    print(f"figures: {result.report_files.get('png')}")
    print("reproduce: python benchmarks/fashion_mnist_seed.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
