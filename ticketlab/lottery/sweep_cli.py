"""`ticketlab sweep`: the rewind sweep's command line. Torch is imported only when the command runs."""

from __future__ import annotations

import argparse
import sys

from ticketlab.config import field_paths
from ticketlab.presets import PRESET_HELP


def add_sweep_command(subparsers) -> argparse.ArgumentParser:
    """Add the `sweep` subcommand to an argparse subparsers object; returns its parser."""
    sweep = subparsers.add_parser(
        "sweep",
        help="rewind sweep: one experiment per rewind step, sharing the dense run",
        description="Run the same lottery experiment for several rewind steps (late resetting). The dense network "
        "is trained once; each rewind step gets its own resumable run directory; a figure compares them. Any config "
        "field can be set as --SECTION.FIELD VALUE.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="presets:\n" + "\n".join(f"  {name:28s} {text}" for name, text in PRESET_HELP.items()),
    )
    sweep.add_argument("--rewinds", required=True, help="comma-separated rewind steps, e.g. 0it,500it,2000it")
    sweep.add_argument("--preset", default="mnist1d", help="starting config (default: mnist1d)")
    sweep.add_argument("--config", help="a .json or .toml config file (replaces the preset)")
    sweep.add_argument("--root", default="runs", help="where run directories go (default: ./runs)")
    sweep.add_argument("--workers", type=int, default=1, help="parallel single-threaded training processes")
    sweep.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    sweep.add_argument("--trials", help="independent repetitions")
    sweep.add_argument("--variants", help="comma-separated variants (must include iterative_reset)")
    sweep.add_argument("--levels", help="pruning rounds after the dense network (prune.levels)")
    sweep.add_argument("--steps", help="training length per level (train.steps)")
    sweep.add_argument("--data-dir", help="local directory holding the dataset files (data.data_dir)")
    sweep.add_argument("--no-report", action="store_true", help="skip each experiment's own report figures")
    sweep.add_argument("--quiet", action="store_true", help="no progress bar")
    for dotted, default, type_text in field_paths():
        if "." in dotted and dotted != "prune.rewind":
            sweep.add_argument(f"--{dotted}", dest=f"set:{dotted}", metavar="VALUE",
                               help=f"{type_text} (default: {default})")
    return sweep


def run_sweep_command(args: argparse.Namespace) -> int | None:
    """Run the sweep described by parsed `args`; prints where the figure and each run went."""
    from ticketlab.cli import _resolve_config  # the same preset/file/override resolution as `ticketlab find`
    from ticketlab.errors import ConfigError
    from ticketlab.lottery.sweep import rewind_sweep

    rewinds = [text.strip() for text in args.rewinds.split(",") if text.strip()]
    if args.workers < 1:
        raise ConfigError(f"--workers {args.workers} must be >= 1")
    config = _resolve_config(args)
    result = rewind_sweep(config, rewinds, root=args.root, device=args.device, workers=args.workers,
                          progress=not args.quiet, report=not args.no_report)
    for text, experiment in result.experiments.items():
        print(f"rewind {text}: {experiment.run_dir}")
    print(f"summary: {result.summary_csv}")
    for path in result.figure_files:
        print(f"figure: {path}")
    return 0


if __name__ == "__main__":  # for trying it before it is wired into ticketlab.cli
    parser = argparse.ArgumentParser(prog="ticketlab")
    add_sweep_command(parser.add_subparsers(dest="command", required=True))
    sys.exit(run_sweep_command(parser.parse_args()))
