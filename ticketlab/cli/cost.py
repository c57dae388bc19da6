"""`ticketlab cost RUN_DIR`: parameters and FLOPs per inference of every finished job. Torch-free until it runs."""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "cost"


def add_command(subparsers) -> argparse.ArgumentParser:
    cost = subparsers.add_parser(
        NAME, help="parameters and FLOPs per inference of every finished job of a run",
        description="Write RUN_DIR/cost.csv (per job: nonzero parameters, dense-equivalent and effective FLOPs "
        "per example), cost_layers.csv (per layer) and report/cost.md. A FLOP is a multiply or an add of a "
        "Linear/Conv weight; biases, norms, activations and pooling are not counted.",
    )
    cost.add_argument("run_dir", help="a run directory (holding config.json)")
    return cost


def run(args: argparse.Namespace) -> int:
    from ticketlab.export.run_cost import run_cost

    for kind, path in run_cost(args.run_dir).items():
        print(f"{kind}: {path}")
    if (Path(args.run_dir) / "results.csv").is_file():  # the report's summary.md gains the cost table
        from ticketlab.report import write_report

        print(f"markdown: {write_report(args.run_dir)['markdown']}")
    return 0
