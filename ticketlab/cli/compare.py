"""`ticketlab compare RUN_DIR RUN_DIR ...`: overlay several runs' lottery curves and list what differs between their
configs. Torch-free until it runs."""

from __future__ import annotations

import argparse

from ticketlab.errors import ConfigError

NAME = "compare"


def add_command(subparsers) -> argparse.ArgumentParser:
    compare = subparsers.add_parser(
        NAME, help="overlay the lottery curves of several runs and list what differs between their configs",
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
    return compare


def run(args: argparse.Namespace) -> int:
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
