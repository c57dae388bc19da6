"""`ticketlab transfer`: train a run's winning tickets on another dataset or with another optimizer. Torch-free
at import."""

from __future__ import annotations

import argparse
from pathlib import Path

from ticketlab.cli.config_args import add_config_arguments, check_run_arguments, resolve_config
from ticketlab.cli.execution_args import add_execution_arguments, executor_options
from ticketlab.cli.vocabulary import add_level_selection, typed
from ticketlab.errors import ConfigError

NAME = "transfer"


def add_command(subparsers) -> argparse.ArgumentParser:
    """Add `transfer` to an argparse subparsers object; returns its parser."""
    transfer = subparsers.add_parser(
        NAME,
        help="train a run's winning tickets on another dataset or with another optimizer",
        description="Transfer winning tickets (Morcos et al., 2019): for each chosen level of each SOURCE_RUN's "
        "iterative_reset tickets, build the target's network (same architecture, output layer sized for the "
        "target's classes, freshly initialized), take the source's masks and starting weights for every other "
        "layer, and train it with the target's protocol. The target is the first source's config changed by the "
        "flags (--data.name, --data.classes, --train.optimizer, ...). Controls on the target: its own IMP tickets "
        "(an ordinary run under --root, reused when present), random tickets with the transferred per-layer "
        "sparsity and a fresh initialization, and the dense network. Writes transfer.csv and a figure; re-running "
        "trains nothing new.",
    )
    transfer.add_argument("sources", nargs="+", metavar="SOURCE_RUN", help="finished run directories (ticketlab find)")
    add_level_selection(transfer, dest="transfer_levels", default="all",
                        help="comma-separated source levels to transfer, e.g. 0,2,4,6 (default: all finished)")
    transfer.add_argument("--output-layer", default="dense", choices=("dense", "masked"),
                          help="the new output layer: dense (default: its source mask names the source's classes) "
                          "or masked at the source's output-layer sparsity (a random mask)")
    transfer.add_argument("--root", default=None,
                          help="where the transfer directory and the target's own run go (default: the first "
                          "source's parent directory)")
    add_execution_arguments(transfer, workers_default=1,
                            workers_help="default: 1; --executor and --workers run the target's own tickets, the "
                            "transferred ones train in this process")
    transfer.add_argument("--no-report", action="store_true", help="skip the figure")
    transfer.add_argument("--quiet", action="store_true", help="no progress bar")
    add_config_arguments(transfer, levels=False)
    return transfer


def parse_levels(text: str, flag: str = "--level") -> list[int] | None:
    """'all' -> None; '0,2,4' -> [0, 2, 4]; ConfigError naming a bad item."""
    if text.strip().lower() == "all":
        return None
    levels = []
    for item in text.split(","):
        if not item.strip().isdigit():
            raise ConfigError(f"{flag} item {item.strip()!r} must be a level number >= 0 (e.g. {flag} 0,2,4) "
                              "or 'all'")
        if int(item) in levels:
            raise ConfigError(f"{flag} {text!r} lists level {int(item)} more than once; list each level at most "
                              "once")
        levels.append(int(item))
    return levels


def run(args: argparse.Namespace) -> int:
    levels = parse_levels(args.transfer_levels, typed(args, "transfer_levels", "--level"))
    first = Path(args.sources[0])
    if not (first / "config.json").is_file():
        raise ConfigError(f"source run {args.sources[0]!r} is not a run directory (no config.json)")
    base = None
    if args.preset is None and args.config is None:  # the target starts as the first source's config ...
        from ticketlab.config import load_config
        from ticketlab.tasks.data_settings import without_task_sections

        base = load_config(first / "config.json")
        if args.task is not None and args.task != base.task:  # ... less its task's sections when --task changes
            base = without_task_sections(base)
    target = resolve_config(args, base=base)
    if args.root is None:
        args.root = str(first.resolve().parent)
    check_run_arguments(args, target)
    executor = executor_options(args)
    from ticketlab.api import transfer_tickets

    result = transfer_tickets(args.sources, target, levels=levels, root=args.root, output_layer=args.output_layer,
                              workers=args.workers, population=args.population, device=args.device,
                              progress=not args.quiet, report=not args.no_report,
                              checkpoint_interval_s=args.checkpoint_every, **executor)
    print(transfer_text_table(result.rows))
    print(f"\ntransfer: {result.transfer_dir}")
    print(f"target's own run: {result.target_run}")
    print(f"results: {result.transfer_csv}")
    for path in result.figure_files:
        print(f"figure: {path}")
    return 0


def transfer_text_table(rows: list[dict]) -> str:
    """Per source and level: weights remaining and the mean early-stop test accuracy (percent, over trials; a task's
    own metric as it is) of the transferred ticket, the random ticket and the target's own ticket at the same
    level, and the dense network."""
    from ticketlab.lottery.transfer_results import transfer_metric

    metric_column = transfer_metric(rows)
    scale = 100 if metric_column == "early_stop_test_accuracy" else 1
    means: dict[tuple, list[float]] = {}
    for row in rows:
        owner = row["source"] if row["variant"] in ("transferred", "random_ticket") else "target"
        means.setdefault((owner, row["variant"], row["level"]), []).append(row)
    def mean(owner, variant, level, column=metric_column):
        entries = means.get((owner, variant, level))
        return None if not entries else sum(float(entry[column]) for entry in entries) / len(entries)

    dense = mean("target", "dense", 0)
    sources = {row["source"]: row["source_data"] for row in rows if row["variant"] == "transferred"}
    lines = []
    for source, label in sorted(sources.items()):
        lines.append(f"tickets of {label} ({source}) on {rows[0]['target']}; dense: "
                     f"{'-' if dense is None else f'{scale * dense:.{2 if scale == 100 else 4}f}'}")
        lines.append(f"{'level':>5s} {'remaining %':>11s} {'transferred':>11s} {'random':>8s} {'own':>8s} "
                     f"{'own rem. %':>10s} {'trials':>6s}")
        for level in sorted({key[2] for key in means if key[0] == source}):
            cells = [mean(source, "transferred", level), mean(source, "random_ticket", level),
                     mean("target", "target_found", level) if level else dense]
            own_remaining = mean("target", "target_found" if level else "dense", level, "weights_remaining_percent")
            decimals = 2 if scale == 100 else 4
            text = [f"{'-':>8s}" if value is None else f"{scale * value:8.{decimals}f}" for value in cells]
            lines.append(f"{level:5d} {mean(source, 'transferred', level, 'weights_remaining_percent'):11.2f} "
                         f"{text[0]:>11s} {text[1]} {text[2]} "
                         f"{'-' if own_remaining is None else f'{own_remaining:.2f}':>10s} "
                         f"{len(means[(source, 'transferred', level)]):6d}")
    return "\n".join(lines)
