"""The command lines of `ticketlab runs`, `ticketlab compare` and `find --log`. Torch is imported only when a
command that needs it runs (`runs` never does)."""

from __future__ import annotations

import argparse
import contextlib
import json
from pathlib import Path
from typing import Iterator

from ticketlab.errors import ConfigError


def add_report_commands(subparsers) -> None:
    """Add the `runs` and `compare` subcommands to an argparse subparsers object."""
    runs = subparsers.add_parser(
        "runs", help="list the run directories under a root: task, config, progress, state, size",
        description="An index of the run directories at or under ROOT, the most recently changed first: task, "
        "preset (when the run's command named one) or model and data, variants, trials, levels done/planned, "
        "state (finished; partial, with the jobs left; damaged, with the files `ticketlab verify` finds), size "
        "on disk and last change. Reads no tensors into torch.",
    )
    runs.add_argument("root", nargs="?", default="runs", help="a folder of run directories (default: ./runs)")
    runs.add_argument("--json", action="store_true", help="print one JSON list (for scripts)")
    runs.add_argument("--no-verify", action="store_true",
                      help="do not hash the runs' files (faster; damaged runs then show as finished or partial)")

    compare = subparsers.add_parser(
        "compare", help="overlay the lottery curves of several runs and list what differs between their configs",
        description="Draw one variant's early-stop metric and early-stop iteration against weights remaining for "
        "each run on one figure (PNG and SVG), and write an HTML page with the figure, a table of the config "
        "values that differ between the runs, and the numbers. Runs of different tasks or metrics are refused.",
    )
    compare.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="two or more run directories")
    compare.add_argument("--labels", help="comma-separated legend labels, one per run (default: the config "
                         "values that tell the runs apart, else their directory names)")
    compare.add_argument("--variant", help="the variant to compare (default: iterative_reset, the winning ticket)")
    compare.add_argument("--output", default="comparison", metavar="DIR",
                         help="folder for comparison.png/.svg/.html (default: ./comparison)")


def add_log_argument(parser: argparse.ArgumentParser) -> None:
    """`--log tensorboard` for `find`."""
    parser.add_argument("--log", choices=("tensorboard",), default=None,
                        help="also write each job's losses, metric, learning rate and weights remaining as "
                        "TensorBoard event files under RUN_DIR/tensorboard (needs ticketlab[tensorboard])")


def run_runs_command(args: argparse.Namespace) -> int:
    from ticketlab.report.run_state import as_dict
    from ticketlab.report.runs_index import index_runs, runs_table

    states = index_runs(args.root, verify=not args.no_verify)
    if args.json:
        print(json.dumps([as_dict(state) for state in states], indent=2))
    elif not states:
        print(f"no run directories under {args.root}")
    else:
        print(runs_table(states, Path(args.root)))
    return 0


def run_compare_command(args: argparse.Namespace) -> int:
    from ticketlab.report.compare import compare_runs

    labels = None
    if args.labels is not None:
        labels = [label.strip() for label in args.labels.split(",")]
        if any(not label for label in labels):
            raise ConfigError(f"--labels {args.labels!r} has an empty label; give one non-empty label per run")
    files = compare_runs(args.run_dirs, labels=labels, output=args.output, variant=args.variant)
    for kind, path in files.items():
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
