"""`ticketlab sweep`: the rewind sweep's command line. Torch is imported only when the command runs."""

from __future__ import annotations

import argparse
from pathlib import Path

from ticketlab.cli.config_args import (
    DEFAULT_PRESET,
    add_config_arguments,
    add_run_arguments,
    check_run_arguments,
    resolve_config,
)
from ticketlab.cli.execution_args import add_execution_arguments, executor_options, ray_cluster_for
from ticketlab.cli.find import presets_epilog
from ticketlab.cli.vocabulary import add_rewind_list, typed
from ticketlab.errors import ConfigError

NAME = "sweep"


def add_command(subparsers) -> argparse.ArgumentParser:
    """Add the `sweep` subcommand to an argparse subparsers object; returns its parser."""
    sweep = subparsers.add_parser(
        NAME,
        help="rewind sweep: one experiment per rewind step, sharing the dense run",
        description="Run the same lottery experiment for several rewind steps (late resetting). The dense network "
        "is trained once; each rewind step gets its own resumable run directory; a figure compares them. Any config "
        f"field can be set as --SECTION.FIELD VALUE. Without --preset or --config the {DEFAULT_PRESET} preset runs: "
        "the values shown below are its values.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=presets_epilog(),
    )
    add_rewind_list(sweep, dest="rewinds", old=("--rewinds",),
                    help="required: comma-separated rewind steps to compare, e.g. 0it,500it,2000it")
    add_run_arguments(sweep)
    add_execution_arguments(sweep, workers_default=1, workers_help="default: 1")
    sweep.add_argument("--no-report", action="store_true", help="skip each experiment's own report figures")
    sweep.add_argument("--quiet", action="store_true", help="no progress bar")
    add_config_arguments(sweep, rewind=False)
    return sweep


def run(args: argparse.Namespace) -> int:
    """Run the sweep described by parsed `args`; prints where the figure and each run went."""
    from ticketlab.config import step_count
    from ticketlab.lottery.estimate import PlanLimit, check_plan
    from ticketlab.lottery.variants import winning_ticket

    if args.rewinds is None:  # not argparse's `required`: the old spelling --rewinds counts too
        raise ConfigError("the following arguments are required: --rewind (see ticketlab sweep --help)")
    flag = typed(args, "rewinds", "--rewind")
    rewinds = [text.strip() for text in args.rewinds.split(",") if text.strip()]
    if not rewinds:
        raise ConfigError(f"{flag} {args.rewinds!r} lists no rewind step; e.g. {flag} 0it,500it")
    repeated = [text for index, text in enumerate(rewinds) if text in rewinds[:index]]
    if repeated:
        raise ConfigError(f"{flag} lists {repeated[0]!r} more than once")
    config = resolve_config(args)
    check_run_arguments(args, config)
    executor = executor_options(args)
    if winning_ticket() not in config.variants:
        raise ConfigError(f"a rewind sweep needs the variant {winning_ticket()!r} in --variants")
    limit = None if args.allow_large else PlanLimit()
    for text in rewinds:
        step_count(text)  # a malformed step is named before any other check
        rewound = config.replace(**{"prune.rewind": text})  # validates the rewind against train.steps
        if limit is not None:
            check_plan(rewound, limit)
    Path(args.root).mkdir(parents=True, exist_ok=True)
    from ticketlab.api import rewind_sweep

    with ray_cluster_for(executor):  # one Ray cluster for every rewind's experiment
        result = rewind_sweep(config, rewinds, root=args.root, device=args.device, workers=args.workers,
                              population=args.population, checkpoint_interval_s=args.checkpoint_every,
                              progress=not args.quiet, report=not args.no_report, plan_limit=limit, **executor)
    for text, experiment in result.experiments.items():
        print(f"rewind {text}: {experiment.run_dir}")
    print(f"summary: {result.summary_csv}")
    for path in result.figure_files:
        print(f"figure: {path}")
    return 0
