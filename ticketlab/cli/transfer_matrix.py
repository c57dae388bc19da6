"""`ticketlab transfer-matrix`: the source-by-target accuracy matrix of several transfers. Torch-free at import."""

from __future__ import annotations

import argparse
from pathlib import Path

from ticketlab.cli.vocabulary import add_flag, typed
from ticketlab.errors import ConfigError

NAME = "transfer-matrix"


def add_command(subparsers) -> argparse.ArgumentParser:
    """Add `transfer-matrix` to an argparse subparsers object; returns its parser."""
    matrix = subparsers.add_parser(
        NAME,
        help="source-by-target accuracy matrix of several transfers at one sparsity",
        description="Read transfer.csv of each TRANSFER (a transfer directory or the file) and write matrix.csv "
        "and matrix.png: one row per ticket source, one column per target, the mean test accuracy at early stop "
        "of the level nearest --at percent weights remaining (the target's own tickets where source = target).",
    )
    matrix.add_argument("transfers", nargs="+", metavar="TRANSFER", help="transfer directories or transfer.csv files")
    matrix.add_argument("--at", type=float, required=True, metavar="PERCENT", help="weights remaining, e.g. 10")
    add_flag(matrix, "--output", aliases=("--out",), dest="out", required=True, metavar="DIR",
             help="directory for matrix.csv and matrix.png/.svg")
    return matrix


def run(args: argparse.Namespace) -> int:
    from ticketlab.lottery.transfer_results import (check_transfer_rows, read_transfer_csv, transfer_matrix,
                                                    write_matrix_csv)
    from ticketlab.report.transfer import write_matrix_figure

    if not args.out.strip():
        raise ConfigError(f"{typed(args, 'out', '--output')} {args.out!r} is empty; give a directory for matrix.csv "
                          "and matrix.png/.svg")
    rows = []
    for text in args.transfers:
        path = Path(text)
        path = path / "transfer.csv" if path.is_dir() else path
        if not path.is_file():
            raise ConfigError(f"transfer {text!r} has no transfer.csv")
        read = read_transfer_csv(path)
        if (path.parent / "transfer.json").is_file():  # a transfer directory: its rows against its sealed jobs
            check_transfer_rows(path.parent, read)
        rows.extend(read)
    matrix = transfer_matrix(rows, args.at)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    csv_path = write_matrix_csv(out / "matrix.csv", matrix)
    figures = write_matrix_figure(matrix, out / "matrix", args.at)
    print(csv_path.read_text().rstrip())
    print(f"\nmatrix: {csv_path}")
    for path in figures:
        print(f"figure: {path}")
    return 0

