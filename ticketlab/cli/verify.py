"""`ticketlab verify RUN_DIR`: check a run directory's recorded hashes without changing it. Torch-free."""

from __future__ import annotations

import argparse
import sys

NAME = "verify"
EXIT_CLEAN = 0
EXIT_DAMAGED = 1


def add_command(subparsers) -> argparse.ArgumentParser:
    """Add the `verify` subcommand to an argparse subparsers object; returns its parser."""
    verify = subparsers.add_parser(
        NAME,
        help="check a run directory's files against their recorded sha256 hashes",
        description="Check config.json, population.json and every job directory of a run: a finished job's "
        "result.json against its digest and each of its files against the sha256 it records; an unfinished "
        "job's mask, weights and checkpoint against the hash in their own metadata. Prints one line per problem "
        "(path: what is wrong) and changes nothing; `ticketlab find` recomputes what is damaged.",
        epilog="exit status: 0 clean, 1 damage found, 2 not a run directory",
    )
    verify.add_argument("run_dir", help="a run directory (holding config.json)")
    return verify


def run(args: argparse.Namespace) -> int:
    """Run `ticketlab verify` for parsed `args`: 0 when clean, 1 when damaged."""
    from ticketlab.lottery.integrity import job_directories, verify_run

    damage = verify_run(args.run_dir)
    for problem in damage:
        print(problem)
    if damage:
        print(f"{args.run_dir}: {len(damage)} problem{'s' if len(damage) != 1 else ''}; run the same `ticketlab "
              "find` command to recompute the damaged jobs", file=sys.stderr)
        return EXIT_DAMAGED
    from pathlib import Path

    print(f"{args.run_dir}: clean ({len(job_directories(Path(args.run_dir)))} job directories verified)")
    return EXIT_CLEAN

