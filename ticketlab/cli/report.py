"""`ticketlab report RUN_DIR`: the figures, summary table and HTML page of a run directory."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ticketlab.errors import ConfigError

NAME = "report"


def add_command(subparsers) -> argparse.ArgumentParser:
    report = subparsers.add_parser(NAME, help="draw the figures and summary table of a run directory")
    report.add_argument("run_dir", help="a run directory holding results.csv")
    return report


def run(args: argparse.Namespace) -> int:
    from ticketlab.report import read_results, summarize_results, write_report
    from ticketlab.report.table import summary_text_table

    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"run directory {args.run_dir!r} "
                          f"{'is not a directory' if run_dir.exists() else 'does not exist'}")
    files = write_report(run_dir)
    from ticketlab.report.html_report import write_html_report
    from ticketlab.report.run_state import is_run_directory, read_run_state

    state = read_run_state(run_dir) if is_run_directory(run_dir) else None
    files["html"] = write_html_report(run_dir, state=state)
    # damage in files the report does not draw from (weights, masks): its numbers stand; results.csv it read itself
    others = [damage for damage in (state.damage or []) if damage.path.name != "results.csv"] if state else []
    if others:
        print(f"ticketlab: warning: {len(others)} damaged file(s) in {run_dir}, named in report.html; "
              "`ticketlab verify` lists them and the run's `ticketlab find` command recomputes them", file=sys.stderr)
    print(summary_text_table(summarize_results(read_results(run_dir / "results.csv"))))
    for kind, path in files.items():
        print(f"{kind}: {path}")
    return 0
