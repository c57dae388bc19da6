"""`ticketlab stability RUN_DIR`: a thin layer over `stability_analysis`.

Importing this module must not import torch; the command imports the analysis modules when it runs.
"""

from __future__ import annotations

import argparse
import math

from ticketlab.cli.config_args import MAX_POPULATION, MAX_WORKERS
from ticketlab.cli.run_dirs import check_run_dir
from ticketlab.cli.vocabulary import (
    add_level_selection,
    add_rewind_list,
    add_trial_selection,
    comma_integers,
    comma_items,
    typed,
)
from ticketlab.errors import ConfigError
from ticketlab.lottery.variants import variants_where

NAME = "stability"
MAX_POINTS = 10_000
RAY_REFUSED = "ray runs find, sweep and transfer, not stability"


def add_command(subparsers) -> argparse.ArgumentParser:
    """Add the `stability` subcommand to an argparse subparsers object; returns its parser."""
    stability = subparsers.add_parser(
        NAME,
        help="stability to data order and pruning, and linear-mode-connectivity instability of a run",
        description="Train two copies of the dense network and of each IMP subnetwork from the dense run's "
        "weights at each rewind step k, with different data orders, then report the distance between their "
        "weights (data-order stability), the distance between each subnetwork and the masked full network "
        "(pruning stability), and the error barrier on the linear path between the copies (instability). "
        "Copies are stored under RUN_DIR/analysis/stability and reused by later runs.",
    )
    stability.add_argument("run_dir", help="a run directory of `ticketlab find`")
    add_rewind_list(stability, dest="rewind", default="0it",
                    help="comma-separated rewind steps k, e.g. 0it,100it,500it or 1ep (default: 0it)")
    add_level_selection(stability, dest="levels",
                        help="comma-separated pruning levels (0 = dense; default: every level with a mask)")
    add_trial_selection(stability, dest="trials", help="comma-separated trials (default: every trial)")
    ticket, *others = variants_where(family="imp", same_mask=False, rewound=True)  # = stability.subnetwork_variants()
    stability.add_argument("--variant", default=ticket,
                           help=f"whose masks: {ticket} (default), {', '.join(others[:-1])} or {others[-1]}")
    stability.add_argument("--points", type=int, default=30, help="points on the linear path (default: 30)")
    stability.add_argument("--train-examples", type=int, metavar="N",
                           help="measure train error on the first N training examples (default: all)")
    stability.add_argument("--test-examples", type=int, metavar="N",
                           help="measure test error on the first N test examples (default: all)")
    stability.add_argument("--batchnorm-examples", type=int, metavar="N",
                           help="recompute BatchNorm statistics from the first N training examples (default: all)")
    stability.add_argument("--all-parameters", action="store_true",
                           help="distances over every parameter, not only the prunable weights")
    stability.add_argument("--fresh-optimizer", action="store_true",
                           help="copies start with a fresh optimizer instead of the dense run's state at step k")
    stability.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    stability.add_argument("--workers", type=int, default=1,
                           help="train the copies in N processes of CPU cores / N threads each, which rebuild the run "
                           "from RUN_DIR (default: 1, this process); the numbers are the same")
    stability.add_argument("--population", type=int, default=1,
                           help="copies trained together as one stacked network where the model stacks (default: 1, "
                           "one at a time, the reference path); the numbers are the same")
    stability.add_argument("--checkpoint-every", type=float, default=30.0, metavar="SECONDS",
                           help="write a copy's resume checkpoint at most this often during training (default: 30)")
    stability.add_argument("--executor", default="local",
                           help=f"local (default): this process and its --workers processes; {RAY_REFUSED}")
    stability.add_argument("--quiet", action="store_true", help="no progress bar")
    return stability


def run(args: argparse.Namespace) -> int:
    if not 2 <= args.points <= MAX_POINTS:
        raise ConfigError(f"--points {args.points} must be between 2 and {MAX_POINTS:,}")
    if args.executor != "local":
        raise ConfigError(f"--executor {args.executor!r} is not allowed for stability; allowed: local; {RAY_REFUSED}")
    for flag, value, high in (("--workers", args.workers, MAX_WORKERS), ("--population", args.population,
                                                                         MAX_POPULATION)):
        if not 1 <= value <= high:
            raise ConfigError(f"{flag} {value} must be between 1 and {high:,}")
    if not (math.isfinite(args.checkpoint_every) and args.checkpoint_every >= 0):
        raise ConfigError(f"--checkpoint-every {args.checkpoint_every} must be a finite number of seconds >= 0")
    settings_values = {
        "rewind_steps": comma_items(args.rewind, typed(args, "rewind", "--rewind")),
        "levels": comma_integers(args.levels, typed(args, "levels", "--level")),
        "trials": comma_integers(args.trials, typed(args, "trials", "--trial")),
        "variant": args.variant,
        "points": args.points,
        "train_examples": args.train_examples,
        "test_examples": args.test_examples,
        "batchnorm_examples": args.batchnorm_examples,
        "all_parameters": args.all_parameters,
        "restore_optimizer": not args.fresh_optimizer,
    }
    check_run_dir(args.run_dir, needs_config=True)
    from ticketlab.analysis.stability import StabilitySettings, stability_analysis

    result = stability_analysis(
        args.run_dir, StabilitySettings(**settings_values), device=args.device, progress=not args.quiet,
        population=args.population, workers=args.workers, checkpoint_interval_s=args.checkpoint_every,
    )
    # an error of 1 - accuracy reads in percent; another task's barrier is in its metric's own units
    percent = _metric_is_accuracy(args.run_dir) if result.rows else True

    def barrier(value: float, width: int) -> str:
        return f"{100 * value:>{width - 1}.2f}%" if percent else f"{value:>{width}.4g}"

    print(f"{'trial':>5} {'level':>5} {'remain%':>8} {'k':>7} {'order dist':>10} {'prune dist':>10} "
          f"{'train barrier':>13} {'test barrier':>12}")
    for row in result.rows:
        pruning = row.get("pruning_relative")
        print(f"{row['trial']:>5} {row['level']:>5} {row['weights_remaining_percent']:>8.2f} {row['rewind_step']:>7} "
              f"{row['data_order_relative']:>10.4f} {'-' if pruning is None else f'{pruning:.4f}':>10} "
              f"{barrier(row['train_barrier'], 13)} {barrier(row['test_barrier'], 12)}")
    print("\ndistances: ||a - b|| / mean(||a||, ||b||) over the masked prunable weights; "
          "barrier: max error on the path - mean of the end points' errors")
    print(f"copies trained now: {result.trained_copies}")
    for kind, path in result.files.items():
        print(f"{kind}: {path}")
    return 0


def _metric_is_accuracy(run_dir) -> bool:
    """The run's task measures accuracy (its barriers print in percent)."""
    from ticketlab.lottery.integrity import read_run_config
    from ticketlab.tasks import load_task

    config = read_run_config(run_dir)
    return load_task(config.task).metric(config).name == "accuracy"
