"""`ticketlab sweep`: the rewind sweep's command line. Torch is imported only when the command runs."""

from __future__ import annotations

import argparse
from pathlib import Path

from ticketlab.config_cli import (
    DEFAULT_PRESET,
    add_config_arguments,
    add_run_arguments,
    check_run_arguments,
    resolve_config,
)
from ticketlab.lottery.executor_cli import add_executor_arguments, executor_options
from ticketlab.presets import PRESET_HELP


def add_sweep_command(subparsers) -> argparse.ArgumentParser:
    """Add the `sweep` subcommand to an argparse subparsers object; returns its parser."""
    sweep = subparsers.add_parser(
        "sweep",
        help="rewind sweep: one experiment per rewind step, sharing the dense run",
        description="Run the same lottery experiment for several rewind steps (late resetting). The dense network "
        "is trained once; each rewind step gets its own resumable run directory; a figure compares them. Any config "
        f"field can be set as --SECTION.FIELD VALUE. Without --preset or --config the {DEFAULT_PRESET} preset runs: "
        "the values shown below are its values.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="presets:\n" + "\n".join(f"  {name:28s} {text}" for name, text in PRESET_HELP.items()),
    )
    sweep.add_argument("--rewinds", required=True, help="comma-separated rewind steps, e.g. 0it,500it,2000it")
    add_run_arguments(sweep)
    sweep.add_argument("--workers", type=int, default=1, help="parallel single-threaded training processes")
    sweep.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    add_executor_arguments(sweep)
    sweep.add_argument("--no-report", action="store_true", help="skip each experiment's own report figures")
    sweep.add_argument("--quiet", action="store_true", help="no progress bar")
    add_config_arguments(sweep, rewind=False)
    return sweep


def run_sweep_command(args: argparse.Namespace) -> int:
    """Run the sweep described by parsed `args`; prints where the figure and each run went."""
    from ticketlab.config import PlanLimit, check_plan, step_count
    from ticketlab.errors import ConfigError

    rewinds = [text.strip() for text in args.rewinds.split(",") if text.strip()]
    if not rewinds:
        raise ConfigError(f"--rewinds {args.rewinds!r} lists no rewind step; e.g. --rewinds 0it,500it")
    repeated = [text for index, text in enumerate(rewinds) if text in rewinds[:index]]
    if repeated:
        raise ConfigError(f"--rewinds lists {repeated[0]!r} more than once")
    config = resolve_config(args)
    check_run_arguments(args, config)
    executor = executor_options(args)
    if "iterative_reset" not in config.variants:
        raise ConfigError("a rewind sweep needs the variant 'iterative_reset' in --variants")
    limit = None if args.allow_large else PlanLimit()
    for text in rewinds:
        step_count(text)  # a malformed step is named before any other check
        rewound = config.replace(**{"prune.rewind": text})  # validates the rewind against train.steps
        if limit is not None:
            check_plan(rewound, limit)
    Path(args.root).mkdir(parents=True, exist_ok=True)
    from ticketlab.lottery.sweep import rewind_sweep

    with _cluster(executor):  # one Ray cluster for every rewind's experiment
        result = rewind_sweep(config, rewinds, root=args.root, device=args.device, workers=args.workers,
                              progress=not args.quiet, report=not args.no_report, plan_limit=limit, **executor)
    for text, experiment in result.experiments.items():
        print(f"rewind {text}: {experiment.run_dir}")
    print(f"summary: {result.summary_csv}")
    for path in result.figure_files:
        print(f"figure: {path}")
    return 0


def _cluster(executor: dict):
    import contextlib

    if executor["executor"] != "ray":
        return contextlib.nullcontext()
    from ticketlab.lottery.ray_executor import ray_cluster

    return ray_cluster(executor["ray_address"])
