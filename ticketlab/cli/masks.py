"""`ticketlab masks RUN_DIR`: Jaccard overlap of a run's masks and per-layer remaining fractions."""

from __future__ import annotations

import argparse

from ticketlab.cli.run_dirs import check_run_dir

NAME = "masks"


def add_command(subparsers) -> argparse.ArgumentParser:
    masks = subparsers.add_parser(
        NAME,
        help="Jaccard overlap of a run's masks and per-layer remaining fractions",
        description="Compare the masks of a run: between trials, between consecutive levels and between "
        "iterative and one-shot pruning (Jaccard overlap, next to the overlap of random masks with the same "
        "per-layer counts), and list each layer's remaining fraction. Writes RUN_DIR/analysis/masks/.",
    )
    masks.add_argument("run_dir", help="a run directory of `ticketlab find`")
    return masks


def run(args: argparse.Namespace) -> int:
    check_run_dir(args.run_dir)
    from ticketlab.analysis.masks import mask_analysis

    result = mask_analysis(args.run_dir)
    pooled = [row for row in result.overlap_rows if row["layer"] == "all"]
    print(f"{'kind':<22} {'variants':<32} {'trials':>7} {'levels':>7} {'remain%':>8} {'jaccard':>8} {'chance':>7}")
    for row in pooled:
        same = row["variant_a"] == row["variant_b"]
        variants = row["variant_a"] if same else f"{row['variant_a']}/{row['variant_b']}"
        print(f"{row['kind']:<22} {variants:<32} {row['trial_a']:>3}/{row['trial_b']:<3} "
              f"{row['level_a']:>3}/{row['level_b']:<3} {row['weights_remaining_percent_a']:>8.2f} "
              f"{row['jaccard']:>8.4f} {row['chance_jaccard']:>7.4f}")
    if not pooled:
        print("no mask pairs to compare (needs 2 trials, several levels, or one-shot masks)")
    for kind, path in result.files.items():
        print(f"{kind}: {path}")
    return 0
