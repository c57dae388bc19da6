"""`ticketlab find`: run (or resume) a lottery-ticket experiment. Torch is imported only when it runs."""

from __future__ import annotations

import argparse
import contextlib
import os
from pathlib import Path
from typing import Iterator

from ticketlab.cli.config_args import (
    DEFAULT_PRESET,
    add_config_arguments,
    add_run_arguments,
    check_run_arguments,
    resolve_config,
)
from ticketlab.cli.execution_args import add_execution_arguments, executor_options
from ticketlab.lottery.estimate import PlanLimit, check_plan
from ticketlab.presets import PRESET_HELP

NAME = "find"


def add_command(subparsers) -> argparse.ArgumentParser:
    find = subparsers.add_parser(
        NAME,
        help="run (or resume) a lottery-ticket experiment",
        description="Run a lottery-ticket experiment: the dense network, then every pruning level of each "
        "variant, for each trial. Re-running the same command resumes where it stopped; a finished experiment "
        "trains nothing. Any config field can be set as --SECTION.FIELD VALUE (see `ticketlab config`). "
        f"Without --preset or --config the {DEFAULT_PRESET} preset runs: the values shown below are its values.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=presets_epilog(),
    )
    add_run_arguments(find)
    add_execution_arguments(find, workers_default=None, workers_help="default: CPU cores, at most trials")
    find.add_argument("--no-report", action="store_true", help="skip drawing the figures at the end")
    find.add_argument("--quiet", action="store_true", help="no progress bar")
    find.add_argument("--log", choices=("tensorboard",), default=None,
                      help="also write each job's losses, metric, learning rate and weights remaining as "
                      "TensorBoard event files under RUN_DIR/tensorboard (needs ticketlab[tensorboard])")
    add_config_arguments(find)
    return find


def presets_epilog() -> str:
    return "presets:\n" + "\n".join(f"  {name:28s} {text}" for name, text in PRESET_HELP.items())


def run(args: argparse.Namespace) -> int:
    config = resolve_config(args)
    check_run_arguments(args, config)
    executor = executor_options(args)
    limit = None if args.allow_large else PlanLimit()
    if limit is not None:
        check_plan(config, limit)  # what is known before the data is loaded (steps in epochs: after)
    Path(args.root).mkdir(parents=True, exist_ok=True)  # an unwritable --root fails here, before any loading
    from ticketlab.training.distributed import is_leader_process, launched_by_torchrun

    torchrun = launched_by_torchrun()  # each job trains data-parallel on all processes, one job at a time
    workers = args.workers or (1 if torchrun else max(1, min(os.cpu_count() or 1, config.trials)))
    from ticketlab.api import find_tickets
    from ticketlab.lottery.experiment import run_directory

    with logging_for(args.log if is_leader_process() else None, run_directory(config, args.root)):
        result = find_tickets(
            config, root=args.root, workers=workers, population=args.population, device=args.device,
            progress=not args.quiet and is_leader_process(), report=not args.no_report,
            checkpoint_interval_s=args.checkpoint_every, plan_limit=limit, **executor,
        )
    if not is_leader_process():  # torchrun: rank 0 prints
        return 0
    from ticketlab.report import read_results, summarize_results
    from ticketlab.report.table import summary_text_table

    print(summary_text_table(summarize_results(read_results(result.results_csv))))
    print(f"\nexperiment: {result.run_dir}")
    print(f"results: {result.results_csv}")
    for kind, path in result.report_files.items():
        print(f"{kind}: {path}")
    return 0


@contextlib.contextmanager
def logging_for(log: str | None, run_dir: Path) -> Iterator[None]:
    """While `find` trains: with `log` "tensorboard", convert finished jobs to event files as they finish and the
    rest at the end (also when training stops early); ConfigError before training if the package is missing.
    With None, nothing."""
    if log != "tensorboard":
        yield
        return
    from ticketlab.report.tensorboard_log import EventWriterThread, check_tensorboard

    check_tensorboard()

    writer = EventWriterThread(run_dir).start()
    try:
        yield
    finally:
        writer.stop()
