"""Tables for a finished run with pruning-at-init / early-bird variants: accuracy per variant and level (mean and
min..max over trials), and what each ticket cost (mask seconds, training iterations, wall seconds).

    python benchmarks/cheap_tickets_summary.py RUN_DIR [--final]

Costs of the ticket at level L: IMP trains the dense network and L pruned networks ((L + 1) x T iterations) and
computes L magnitude masks; a pruning-at-init ticket computes one mask at θ0 and trains once (T); an early-bird
ticket trains the search to its detection step t and the ticket from t to the end (t + T - t = T, plus the search's
remaining checks). Wall seconds per job are the population's wall time divided by its size when jobs trained
together (an even share, not a measurement of the job alone).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--final", action="store_true", help="final instead of early-stop test accuracy")
    args = parser.parse_args()
    run = args.run_dir
    column = "final_test_metric" if args.final else "early_stop_test_metric"
    records = [json.loads(path.read_text()) for path in sorted(run.glob("trial_*/level_*/*/result.json"))]
    by_key = {(r["variant"], r["trial"], r["level"]): r for r in records}
    variants = list(json.loads((run / "config.json").read_text())["config"]["variants"])
    levels = sorted({r["level"] for r in records if r["level"] > 0})
    trials = sorted({r["trial"] for r in records})
    total_steps = max(r.get("final_iteration", 0) for r in records)

    def cell(variant, level):
        values = [by_key[(variant if level else "dense", t, level)][column] for t in trials
                  if (variant if level else "dense", t, level) in by_key]
        if not values:
            return "-"
        mean = 100 * statistics.mean(values)
        return f"{mean:.1f} ({100 * min(values):.1f}-{100 * max(values):.1f})"

    remaining = {level: statistics.mean(r["weights_remaining_percent"] for r in records
                                        if r["level"] == level and r["variant"] == "iterative_reset")
                 for level in levels if any(r["level"] == level and r["variant"] == "iterative_reset" for r in records)}
    print(f"### {'Final' if args.final else 'Early-stop'} test accuracy (%), mean (min-max) over {len(trials)} trials\n")
    print("| variant | " + " | ".join(f"{remaining.get(level, float('nan')):.1f}% w" for level in levels) + " |")
    print("| --- |" + " --- |" * len(levels))
    dense = cell("dense", 0)
    print(f"| dense (100%) | {dense} |" + " |" * (len(levels) - 1))
    for variant in variants:
        print(f"| {variant} | " + " | ".join(cell(variant, level) for level in levels) + " |")

    print(f"\n### Cost of one ticket at the sparsest level ({levels[-1]}), mean over trials\n")
    print("| variant | mask s | training iterations | training wall s (share) | total wall s |")
    print("| --- | --- | --- | --- | --- |")

    def share(record):
        return record["wall_time_s"] / record.get("population_size", 1)

    dense_wall = statistics.mean(share(by_key[("dense", t, 0)]) for t in trials)
    for variant in variants:
        rows = [by_key[(variant, t, levels[-1])] for t in trials if (variant, t, levels[-1]) in by_key]
        if not rows:
            continue
        if variant in ("iterative_reset", "iterative_reinit"):
            chain = [[by_key[("iterative_reset", t, level)] for level in levels] for t in trials]
            mask_s = statistics.mean(sum(r.get("mask_time_s", 0) for r in c) for c in chain)
            wall = statistics.mean(sum(share(r) for r in c) for c in chain) + dense_wall
            iterations = (len(levels) + 1) * total_steps
        elif variant.startswith("early_bird"):
            searches = [by_key[("early_bird_search", t, 0)] for t in trials]
            mask_s = 0.0
            search_steps = statistics.mean(s["levels"][str(levels[-1])]["detection_step"] for s in searches)
            trained = statistics.mean(r["final_iteration"] - r["start_step"] for r in rows)
            iterations = round(search_steps + trained)
            wall = statistics.mean(s["wall_time_s"] for s in searches) + statistics.mean(share(r) for r in rows)
        else:
            mask_s = statistics.mean(r.get("mask_time_s", 0) for r in rows)
            iterations = total_steps
            wall = statistics.mean(share(r) for r in rows) + mask_s
        train_wall = statistics.mean(share(r) for r in rows)
        print(f"| {variant} | {mask_s:.2f} | {iterations:,} | {train_wall:.1f} | {wall:.1f} |")

    if (run / "early_bird.csv").is_file():
        print("\n### Early-bird detection\n")
        print((run / "early_bird.csv").read_text())


if __name__ == "__main__":
    main()
