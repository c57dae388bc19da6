"""Command line: a thin layer that builds an ExperimentConfig and calls the Python API.

Importing this module must not import torch (`ticketlab --help` stays fast); commands import it when run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ticketlab.analysis.cli import add_analysis_commands, run_analysis_command
from ticketlab.config import ExperimentConfig, field_paths, load_config
from ticketlab.errors import ConfigError, TicketlabError
from ticketlab.lottery.sweep_cli import add_sweep_command, run_sweep_command
from ticketlab.lottery.verify_cli import add_verify_command, run_verify_command
from ticketlab.presets import PRESET_HELP, preset

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ticketlab",
        description="Find winning lottery tickets (iterative magnitude pruning) and study them.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    find = commands.add_parser(
        "find",
        help="run (or resume) a lottery-ticket experiment",
        description="Run a lottery-ticket experiment: the dense network, then every pruning level of each "
        "variant, for each trial. Re-running the same command resumes where it stopped; a finished experiment "
        "trains nothing. Any config field can be set as --SECTION.FIELD VALUE (see `ticketlab config`).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="presets:\n" + "\n".join(f"  {name:28s} {text}" for name, text in PRESET_HELP.items()),
    )
    find.add_argument("--preset", default="mnist1d", help="starting config (default: mnist1d)")
    find.add_argument("--config", help="a .json or .toml config file (replaces the preset)")
    find.add_argument("--root", default="runs", help="where run directories go (default: ./runs)")
    find.add_argument("--workers", type=int, default=None,
                      help="parallel single-threaded training processes for models that cannot be stacked "
                      "(default: CPU cores, at most trials)")
    find.add_argument("--population", type=int, default=None,
                      help="jobs trained together as one stacked network (default: as many as fit in memory; "
                      "1: one at a time, the reference path)")
    find.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    find.add_argument("--trials", help="independent repetitions (different init and data order)")
    find.add_argument("--seed", help="base seed every random choice derives from")
    find.add_argument("--variants", help="comma-separated subset of: iterative_reset, iterative_reinit, "
                      "oneshot_reset, oneshot_reinit, random_pruning, finetune")
    find.add_argument("--levels", help="pruning rounds after the dense network (prune.levels)")
    find.add_argument("--target-remaining", metavar="PERCENT",
                      help="prune until at most this percent of weights remains, in (0, 100]")
    find.add_argument("--rewind", help="reset survivors to this step of the dense run: 0it (θ0), 500it, 2ep")
    find.add_argument("--steps", help="training length per level, e.g. 50000it or 40ep (train.steps)")
    find.add_argument("--data-dir", help="local directory holding the dataset files (data.data_dir)")
    find.add_argument("--checkpoint-every", type=float, default=30.0, metavar="SECONDS",
                      help="write a resume checkpoint at most this often during training (default: 30)")
    find.add_argument("--no-report", action="store_true", help="skip drawing the figures at the end")
    find.add_argument("--quiet", action="store_true", help="no progress bar")
    for dotted, default, type_text in field_paths():
        if "." in dotted:
            find.add_argument(f"--{dotted}", dest=f"set:{dotted}", metavar="VALUE",
                              help=f"{type_text} (default: {_show(default)})")

    report = commands.add_parser("report", help="draw the figures and summary table of a run directory")
    report.add_argument("run_dir", help="a run directory holding results.csv")

    config = commands.add_parser("config", help="print the resolved config of a preset/file with overrides")
    config.add_argument("--preset", default="mnist1d")
    config.add_argument("--config")

    commands.add_parser("presets", help="list the named presets")
    add_sweep_command(commands)
    add_verify_command(commands)
    add_analysis_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "find":
            return _find(args)
        if args.command == "report":
            return _report(Path(args.run_dir))
        if args.command == "config":
            print(_resolve_config(args).to_json())
            return 0
        if args.command == "verify":
            return run_verify_command(args)
        if args.command == "presets":
            for name, text in PRESET_HELP.items():
                print(f"{name:28s} {text}")
            return 0
        for run_command in (run_sweep_command, run_analysis_command):
            code = run_command(args)
            if code is not None:
                return code
    except TicketlabError as error:
        print(f"ticketlab: error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
    except BrokenPipeError:  # output piped into `head` and the like
        return 0
    except KeyboardInterrupt:
        print("\nticketlab: interrupted; finished work is saved, run the same command again to resume",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0


def _resolve_config(args: argparse.Namespace) -> ExperimentConfig:
    config = load_config(args.config) if args.config else preset(args.preset)
    changes = {}
    shortcuts = {
        "trials": "trials", "seed": "seed", "variants": "variants", "levels": "prune.levels",
        "target_remaining": "prune.target_remaining_percent", "rewind": "prune.rewind",
        "steps": "train.steps", "data_dir": "data.data_dir",
    }
    for attribute, dotted in shortcuts.items():
        value = getattr(args, attribute, None)
        if value is not None:
            changes[dotted] = value
    for attribute, value in vars(args).items():
        if attribute.startswith("set:") and value is not None:
            changes[attribute[4:]] = value
    if "prune.target_remaining_percent" in changes and "prune.levels" not in changes:
        changes.setdefault("prune.levels", 10_000)
    return config.replace(**changes) if changes else config


def _find(args: argparse.Namespace) -> int:
    config = _resolve_config(args)
    if args.workers is not None and args.workers < 1:
        raise ConfigError(f"--workers {args.workers} must be >= 1")
    if args.population is not None and args.population < 1:
        raise ConfigError(f"--population {args.population} must be >= 1")
    if args.data_dir is not None and not Path(args.data_dir).is_dir():
        raise ConfigError(f"--data-dir {args.data_dir!r} is not a directory")
    import os

    workers = args.workers or max(1, min(os.cpu_count() or 1, config.trials))
    from ticketlab.lottery.experiment import find_tickets, run_directory

    print(f"ticketlab: experiment {run_directory(config, args.root)}", file=sys.stderr)
    result = find_tickets(
        config, root=args.root, workers=workers, population=args.population, device=args.device,
        progress=not args.quiet,
        report=not args.no_report, checkpoint_interval_s=args.checkpoint_every,
    )
    from ticketlab.report import read_results, summarize_results
    from ticketlab.report.table import summary_text_table

    print(summary_text_table(summarize_results(read_results(result.results_csv))))
    print(f"\nresults: {result.results_csv}")
    for kind, path in result.report_files.items():
        print(f"{kind}: {path}")
    return 0


def _report(run_dir: Path) -> int:
    from ticketlab.report import read_results, summarize_results, write_report
    from ticketlab.report.table import summary_text_table

    files = write_report(run_dir)
    print(summary_text_table(summarize_results(read_results(run_dir / "results.csv"))))
    for kind, path in files.items():
        print(f"{kind}: {path}")
    return 0


def _show(value) -> str:
    if isinstance(value, tuple):
        return ",".join(map(str, value)) if value and not isinstance(value[0], tuple) else str(list(value))
    return str(value)


if __name__ == "__main__":
    sys.exit(main())
