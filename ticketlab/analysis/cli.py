"""The `stability` and `masks` subcommands: a thin layer over `stability_analysis` and `mask_analysis`.

Importing this module must not import torch; the commands import the analysis modules when they run.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ticketlab.errors import ConfigError

COMMANDS = ("stability", "masks")
MAX_POINTS = 10_000


def add_analysis_commands(subparsers) -> None:
    """Add the `stability` and `masks` subcommands to an argparse subparsers object."""
    stability = subparsers.add_parser(
        "stability",
        help="stability to data order and pruning, and linear-mode-connectivity instability of a run",
        description="Train two copies of the dense network and of each IMP subnetwork from the dense run's "
        "weights at each rewind step k, with different data orders, then report the distance between their "
        "weights (data-order stability), the distance between each subnetwork and the masked full network "
        "(pruning stability), and the error barrier on the linear path between the copies (instability). "
        "Copies are stored under RUN_DIR/analysis/stability and reused by later runs.",
    )
    stability.add_argument("run_dir", help="a run directory of `ticketlab find`")
    stability.add_argument("--rewind", default="0it",
                           help="comma-separated rewind steps k, e.g. 0it,100it,500it or 1ep (default: 0it)")
    stability.add_argument("--levels", "--level", dest="levels",
                           help="comma-separated pruning levels (0 = dense; default: every level with a mask)")
    stability.add_argument("--trials", help="comma-separated trials (default: every trial)")
    stability.add_argument("--variant", default="iterative_reset",
                           help="whose masks: iterative_reset (default), oneshot_reset or random_pruning")
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
    stability.add_argument("--quiet", action="store_true", help="no progress bar")

    masks = subparsers.add_parser(
        "masks",
        help="Jaccard overlap of a run's masks and per-layer remaining fractions",
        description="Compare the masks of a run: between trials, between consecutive levels and between "
        "iterative and one-shot pruning (Jaccard overlap, next to the overlap of random masks with the same "
        "per-layer counts), and list each layer's remaining fraction. Writes RUN_DIR/analysis/masks/.",
    )
    masks.add_argument("run_dir", help="a run directory of `ticketlab find`")


def run_analysis_command(args: argparse.Namespace) -> int | None:
    """Run `args.command` if it is `stability` or `masks` and return the exit code; None for other commands."""
    if args.command == "stability":
        return _stability(args)
    if args.command == "masks":
        return _masks(args)
    return None


def _stability(args: argparse.Namespace) -> int:
    if not 2 <= args.points <= MAX_POINTS:
        raise ConfigError(f"--points {args.points} must be between 2 and {MAX_POINTS:,}")
    settings_values = {
        "rewind_steps": _items(args.rewind, "--rewind"),
        "levels": _integers(args.levels, "--levels"),
        "trials": _integers(args.trials, "--trials"),
        "variant": args.variant,
        "points": args.points,
        "train_examples": args.train_examples,
        "test_examples": args.test_examples,
        "batchnorm_examples": args.batchnorm_examples,
        "all_parameters": args.all_parameters,
        "restore_optimizer": not args.fresh_optimizer,
    }
    _check_run_dir(args.run_dir, needs_config=True)
    from ticketlab.analysis.stability import StabilitySettings, stability_analysis

    result = stability_analysis(
        args.run_dir, StabilitySettings(**settings_values), device=args.device, progress=not args.quiet
    )
    print(f"{'trial':>5} {'level':>5} {'remain%':>8} {'k':>7} {'order dist':>10} {'prune dist':>10} "
          f"{'train barrier':>13} {'test barrier':>12}")
    for row in result.rows:
        pruning = row.get("pruning_relative")
        print(f"{row['trial']:>5} {row['level']:>5} {row['weights_remaining_percent']:>8.2f} {row['rewind_step']:>7} "
              f"{row['data_order_relative']:>10.4f} {'-' if pruning is None else f'{pruning:.4f}':>10} "
              f"{100 * row['train_barrier']:>12.2f}% {100 * row['test_barrier']:>11.2f}%")
    print("\ndistances: ||a - b|| / mean(||a||, ||b||) over the masked prunable weights; "
          "barrier: max error on the path - mean of the end points' errors")
    print(f"copies trained now: {result.trained_copies}")
    for kind, path in result.files.items():
        print(f"{kind}: {path}")
    return 0


def _masks(args: argparse.Namespace) -> int:
    _check_run_dir(args.run_dir)
    from ticketlab.analysis.masks import mask_analysis

    result = mask_analysis(args.run_dir)
    pooled = [row for row in result.overlap_rows if row["layer"] == "all"]
    print(f"{'kind':<22} {'variants':<32} {'trials':>7} {'levels':>7} {'remain%':>8} {'jaccard':>8} {'chance':>7}")
    for row in pooled:
        same = row["variant_a"] == row["variant_b"]
        variants = row["variant_a"] if same else f"{row['variant_a']}/{row['variant_b']}"
        print(f"{row['kind']:<22} {variants:<32} {row['trial_a']:>3}/{row['trial_b']:<3} "
              f"{row['level_a']:>3}/{row['level_b']:<3} {row['weights_remaining_percent_a']:>8.2f} "
              f"{row['jaccard']:>8.4f} {row['chance_jaccard']:>7.4f}")
    if not pooled:
        print("no mask pairs to compare (needs 2 trials, several levels, or one-shot masks)")
    for kind, path in result.files.items():
        print(f"{kind}: {path}")
    return 0


def _check_run_dir(run_dir: str, needs_config: bool = False) -> None:
    """The run directory exists; with `needs_config`, its config.json is a readable, valid config."""
    path = Path(run_dir)
    if not path.is_dir():
        raise ConfigError(f"run directory {run_dir!r} {'is not a directory' if path.exists() else 'does not exist'}")
    if needs_config:
        from ticketlab.lottery.integrity import read_run_config

        if not (path / "config.json").is_file():
            raise ConfigError(f"{run_dir!r} is not a run directory of `ticketlab find` (no config.json)")
        read_run_config(path)  # checked against its hash, as every command reading a run checks it


def _items(text: str | None, flag: str) -> tuple[str, ...] | None:
    if text is None:
        return None
    items = tuple(item.strip() for item in text.split(",") if item.strip())
    if not items:
        raise ConfigError(f"{flag} {text!r} lists nothing")
    _refuse_repeats(items, text, flag)
    return items


def _integers(text: str | None, flag: str) -> tuple[int, ...] | None:
    items = _items(text, flag)
    if items is None:
        return None
    try:
        numbers = tuple(int(item) for item in items)
    except ValueError:
        raise ConfigError(f"{flag} {text!r} must be comma-separated integers") from None
    _refuse_repeats(numbers, text, flag)  # 1 and 01 are the same level
    return numbers


def _refuse_repeats(items: tuple, text: str, flag: str) -> None:
    repeated = next((item for index, item in enumerate(items) if item in items[:index]), None)
    if repeated is not None:
        raise ConfigError(f"{flag} {text!r} lists {repeated} more than once; list each at most once")
