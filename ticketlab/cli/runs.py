"""`ticketlab runs [ROOT]`: an index of the run directories under a root. Never imports torch."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

NAME = "runs"


def add_command(subparsers) -> argparse.ArgumentParser:
    runs = subparsers.add_parser(
        NAME, help="list the run directories under a root: task, config, progress, state, size",
        description="An index of the run directories at or under ROOT, the most recently changed first: task, "
        "preset (when the run's command named one) or model and data, variants, trials, levels done/planned, "
        "state (finished; partial, with the jobs left; damaged, with the files `ticketlab verify` finds), size "
        "on disk and last change. Reads no tensors into torch.",
    )
    runs.add_argument("root", nargs="?", default="runs", help="a folder of run directories (default: ./runs)")
    runs.add_argument("--json", action="store_true", help="print one JSON list (for scripts)")
    runs.add_argument("--no-verify", action="store_true",
                      help="do not hash the runs' files (faster; damaged runs then show as finished or partial)")
    return runs


def run(args: argparse.Namespace) -> int:
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
