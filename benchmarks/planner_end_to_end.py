"""End to end: the Fashion-MNIST seed experiment with the population planner vs `--population 1`, same run.

LeNet-300-100, iterative reset + iterative reinit + random pruning, evaluation every 100 iterations. The issue's
full size is 5 trials x 15 levels x 4,000 iterations; `--trials/--levels/--steps` scale it down. Both paths
run in fresh run directories with `--workers` single-threaded processes (their best setting: the plain path
trains one job per process, the population path splits every population across them; `--population-workers 1`
trains the populations in this process with all threads instead).

Prints both wall times, the speed-up, the largest per-row differences between the two results.csv files, and
each path's achieved FLOP/s against the fp32 matmul peak measured in the same run. The FLOPs counted are the
protocol's: 6 x weights x batch per training step, and 2 x weights per example evaluated (the validation set at
every evaluation point, the test set once at the reported minimum and once more for the final weights when they
differ, the training set at the end). The FLOP bound is those FLOPs at the peak: no run can be faster.

The sparse path (`--kernels auto`, the default; `sparse`; `none` skips it) trains the same jobs with `train.kernels`
set, stacked into populations as the dense population path is (LeNet's populations run their sparse layers as one
block-diagonal product of all members), in the same run, and is compared with the dense paths: wall time, rows
that keep their early-stop iteration, accuracy differences, and the time per level against the weights remaining
(job-seconds per level: each job's wall time, a population's shared among its members), printed and drawn to
`--figure`.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

import ticketlab
import ticketlab.data
import ticketlab.store
from ticketlab.lottery.experiment import model_factory
from flops import evaluation_flops, forward_flops, matmul_peak, training_flops
from peak_flops import sustained_matmul_peak
from run_accounting import RunAccounting, describe


def _rows(path: Path) -> dict[tuple, dict]:
    with open(path) as handle:
        return {(row["variant"], row["trial"], row["level"]): row for row in csv.DictReader(handle)}


def protocol_flops(run_dir: Path, config, split_sizes: tuple[int, int, int], forward: int) -> float:
    """Training and evaluation FLOPs of every job in `run_dir`, counted from its result.json and metrics.jsonl."""
    train_size, val_size, test_size = split_sizes
    total = 0.0
    for result_path in run_dir.glob("trial_*/level_*/*/result.json"):
        result = ticketlab.store.read_json(result_path)
        steps = result["final_iteration"] - result["start_step"]
        evaluations = sum(1 for _ in open(result_path.parent / "metrics.jsonl"))
        tests = 1 if result["early_stop_iteration"] == result["final_iteration"] else 2
        total += training_flops(forward, steps * config.train.batch_size)
        total += evaluation_flops(forward, evaluations * val_size + tests * test_size + train_size)
    return total


def compare_rows(label: str, rows: dict, reference_label: str, csvs: dict) -> None:
    """How far `rows` (results.csv of one path) are from the reference path's: same early-stop iterations,
    largest accuracy differences."""
    reference = csvs[reference_label]
    same = sum(rows[key]["early_stop_iteration"] == row["early_stop_iteration"] for key, row in reference.items())
    gaps = [abs(float(rows[key][column]) - float(row[column])) for key, row in reference.items()
            for column in ("early_stop_test_accuracy",)]
    finals = [abs(float(rows[key]["final_test_accuracy"]) - float(row["final_test_accuracy"]))
              for key, row in reference.items()]
    print(f"{label} vs {reference_label}: {same} of {len(reference)} rows keep their early-stop iteration; largest "
          f"|early-stop test accuracy difference| {100 * max(gaps):.2f} points (mean {100 * sum(gaps) / len(gaps):.2f}); "
          f"final test accuracy {100 * max(finals):.2f} points")


def level_times(run_dirs: dict[str, Path], figure: str, names: dict[str, str]) -> None:
    """Job-seconds per level of each path against the weights remaining, printed and drawn."""
    series = {}
    for label, run_dir in run_dirs.items():
        per_level: dict[int, list] = {}
        for result_path in run_dir.glob("trial_*/level_*/*/result.json"):
            result = ticketlab.store.read_json(result_path)
            level = int(result_path.parent.parent.name.split("_")[1])
            entry = per_level.setdefault(level, [0.0, 100.0])
            entry[0] += result["wall_time_s"] / result.get("population_size", 1)
            if result["variant"] != "random_pruning" or level == 0:
                entry[1] = min(entry[1], result["weights_remaining_percent"])
        series[label] = dict(sorted(per_level.items()))
    labels = list(series)
    print("job-seconds per level (each job's wall time; a population's shared among its members):")
    print(f"{'level':>5} {'remaining %':>11} " + " ".join(f"{label:>10}" for label in labels))
    for level, (_, remaining) in series[labels[0]].items():
        print(f"{level:>5} {remaining:>11.1f} " + " ".join(f"{series[label][level][0]:>10.1f}" for label in labels))
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(matplotlib not installed: no figure)")
        return
    fig, axis = plt.subplots(figsize=(6, 4))
    for label in labels:
        points = list(series[label].values())
        axis.plot([remaining for _, remaining in points], [seconds for seconds, _ in points], "o-",
                  label=names.get(label, label))
    axis.set_xscale("log")
    axis.invert_xaxis()
    axis.set_xlabel("weights remaining (%)")
    axis.set_ylabel("job-seconds per level")
    axis.set_title("planner_end_to_end: time per level, dense vs sparse kernels")
    axis.legend()
    fig.tight_layout()
    fig.savefig(figure, dpi=120)
    print(f"figure: {figure}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--levels", type=int, default=15)
    parser.add_argument("--steps", default="4000it")
    parser.add_argument("--workers", type=int, default=2, help="single-threaded processes for both paths")
    parser.add_argument("--population-workers", type=int, default=None,
                        help="processes for the population path (default: --workers; 1: in this process)")
    parser.add_argument("--skip-plain", action="store_true", help="time the population path only (no comparison)")
    parser.add_argument("--keep", action="store_true", help="keep the run directories (their path is printed)")
    parser.add_argument("--peak-seconds", type=float, default=20.0,
                        help="length of each sustained peak measurement, before and after the runs (0: skip them)")
    parser.add_argument("--kernels", default="auto", choices=("auto", "sparse", "none"),
                        help="train.kernels of the sparse path (none: no sparse path)")
    parser.add_argument("--figure", default="planner_end_to_end_levels.png", help="where the per-level figure goes")
    args = parser.parse_args()
    population_workers = args.workers if args.population_workers is None else args.population_workers
    config = ticketlab.preset("lenet_fashion_mnist_short").replace(
        trials=args.trials,
        variants=["iterative_reset", "iterative_reinit", "random_pruning"],
        **{"train.steps": args.steps, "prune.levels": args.levels},
    )
    threads = torch.get_num_threads()
    peak_before = matmul_peak(threads)
    print(f"fp32 matmul peak ({threads} threads): {peak_before / 1e9:.1f} GFLOP/s", flush=True)
    root = Path(tempfile.mkdtemp(prefix="ticketlab-planner-"))
    timings, csvs, run_dirs, accounts = {}, {}, {}, {}
    sustained = sustained_peaks(threads, args.peak_seconds, "before")
    paths = [("population", {"population": None, "workers": population_workers})]
    if not args.skip_plain:
        paths.append(("plain", {"population": 1, "workers": args.workers}))
    if args.kernels != "none":
        paths.append(("sparse", {"population": None, "workers": population_workers}))
    for label, options in paths:
        started = time.time()
        path_config = config.replace(**{"train.kernels": args.kernels}) if label == "sparse" else config
        with RunAccounting() as accounts[label]:
            result = ticketlab.find_tickets(path_config, root=root / label, report=False, **options)
        timings[label] = time.time() - started
        csvs[label] = _rows(result.results_csv)
        run_dirs[label] = result.run_dir
        print(f"{label:10s} wall time {timings[label]:8.1f} s", flush=True)
    peak = max(peak_before, matmul_peak(threads))
    print(f"fp32 matmul peak at the end: {peak / 1e9:.1f} GFLOP/s (the higher of the two counts)")
    splits = ticketlab.data.load_dataset(config.data)
    sizes = (len(splits.x_train), len(splits.x_val), len(splits.x_test))
    forward = forward_flops(model_factory(config, splits, None)(0), splits.input_shape)
    flops = protocol_flops(run_dirs["population"], config, sizes, forward)
    bound = flops / peak
    print(f"protocol FLOPs: {flops / 1e12:.1f} TFLOP ({forward / 2:,.0f} weights; train/val/test {sizes}); FLOP bound at "
          f"the peak: {bound:.0f} s = {bound / 60:.1f} min")
    for label, seconds in timings.items():
        print(f"{label:10s} {seconds / 60:6.1f} min, {flops / seconds / 1e9:6.1f} GFLOP/s = "
              f"{100 * bound / seconds:5.1f}% of the FLOP bound")
    sustained = both_ends(sustained, sustained_peaks(threads, args.peak_seconds, "after"))
    print_accounting(accounts, sustained, flops, threads)
    reproduce = "reproduce: python benchmarks/planner_end_to_end.py " + " ".join(sys.argv[1:])
    if args.keep:
        print(f"run directories kept under {root}")
    if "sparse" in csvs:
        compare_rows("sparse", csvs["sparse"], "plain" if "plain" in csvs else "population", csvs)
        print(f"speed-up of the sparse path: {timings['population'] / timings['sparse']:.2f}x over the population "
              "path" + (f", {timings['plain'] / timings['sparse']:.2f}x over the plain path" if "plain" in csvs else ""))
        level_times(run_dirs, args.figure, {"population": "dense kernels, populations",
                                            "plain": "dense kernels, one job at a time",
                                            "sparse": f"{args.kernels} kernels, populations"})
    if args.skip_plain:
        print(reproduce)
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        return
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
    print(reproduce)
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)


def sustained_peaks(threads: int, seconds: float, when: str) -> dict:
    """The sustained fp32 matmul peak (median 1-s window, FLOP/s) at `threads` threads and at one (also by CPU
    time: one core's speed while it runs), measured `when` the runs (a burst misses what a 20-minute run meets:
    docs/performance.md)."""
    if seconds <= 0:
        return {}
    peaks = {count: sustained_matmul_peak(count, seconds) for count in sorted({threads, 1})}
    print(f"sustained fp32 matmul peak {when} the runs (median of 1-s windows over {seconds:g} s): "
          + ", ".join(f"{peaks[count]['median'] / 1e9:.1f} GFLOP/s at {count} thread(s)" for count in peaks)
          + f"; one core by CPU time {peaks[1]['cpu_time_median'] / 1e9:.1f} GFLOP/s", flush=True)
    return peaks


def both_ends(before: dict, after: dict) -> dict:
    """The mean of the peaks measured before and after the runs (what the runs met lies between, or near)."""
    return {count: {key: (before[count][key] + after[count][key]) / 2 for key in ("median", "cpu_time_median")}
            for count in before}


def print_accounting(accounts: dict, sustained: dict, flops: float, threads: int) -> None:
    """Each path's share of the bound at the sustained peak, and where its wall time went (run_accounting)."""
    for label, account in accounts.items():
        wall = account.report["wall_s"]
        bound = (f"{100 * flops / sustained[threads]['median'] / wall:5.1f}% of the bound at the sustained peak "
                 f"(mean of before and after); "
                 if sustained else "")
        core_peak = sustained[1]["cpu_time_median"] if sustained else None
        print(f"{label:10s} {bound}{describe(account.report, os.cpu_count() or 1, flops, core_peak)}")


if __name__ == "__main__":
    main()
