"""Command line: a thin layer that builds an ExperimentConfig and calls the Python API.

Every error the user can cause (a bad value or file, an unwritable path, a full disk, a missing dataset) ends the
command with status 2 and one line on stderr; `TICKETLAB_DEBUG=1` shows its traceback instead. Internal errors
keep their traceback. Importing this module must not import torch (`ticketlab --help` stays fast); commands
import it when they run.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import warnings
from pathlib import Path

from ticketlab.analysis.cli import add_analysis_commands, run_analysis_command
from ticketlab.config import PlanLimit, check_plan
from ticketlab.config_cli import (
    DEFAULT_PRESET,
    add_config_arguments,
    add_run_arguments,
    check_run_arguments,
    resolve_config,
)
from ticketlab.errors import ConfigError, TicketlabError, os_error_message
from ticketlab.export.cli import add_export_commands, run_export_command
from ticketlab.lottery.executor_cli import add_executor_arguments, executor_options
from ticketlab.lottery.sweep_cli import add_sweep_command, run_sweep_command
from ticketlab.lottery.transfer_cli import add_transfer_commands, run_transfer_command, run_transfer_matrix_command
from ticketlab.lottery.verify_cli import add_verify_command, run_verify_command
from ticketlab.presets import PRESET_HELP
from ticketlab.report.cli import (
    add_log_argument,
    add_report_commands,
    logging_for,
    run_compare_command,
    run_runs_command,
)

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130
DEBUG_VARIABLE = "TICKETLAB_DEBUG"
# Option values that look like negative numbers or steps (-5it, -1e300, -inf) are values, not options: the
# config's validation then refuses them by name instead of argparse reporting a missing argument.
_DASH_VALUE = re.compile(r"^-(\d|\.\d|inf|nan)", re.IGNORECASE)


class CommandLineParser(argparse.ArgumentParser):
    """argparse with usage errors on one line (and a pointer to --help) and values that may start with '-'."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = _DASH_VALUE

    def error(self, message: str):
        self.exit(EXIT_USER_ERROR, f"ticketlab: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = CommandLineParser(
        prog="ticketlab",
        description="Find winning lottery tickets (iterative magnitude pruning) and study them.",
        epilog=f"User errors exit with status 2 and one line on stderr; {DEBUG_VARIABLE}=1 shows the traceback.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    presets_epilog = "presets:\n" + "\n".join(f"  {name:28s} {text}" for name, text in PRESET_HELP.items())

    find = commands.add_parser(
        "find",
        help="run (or resume) a lottery-ticket experiment",
        description="Run a lottery-ticket experiment: the dense network, then every pruning level of each "
        "variant, for each trial. Re-running the same command resumes where it stopped; a finished experiment "
        "trains nothing. Any config field can be set as --SECTION.FIELD VALUE (see `ticketlab config`). "
        f"Without --preset or --config the {DEFAULT_PRESET} preset runs: the values shown below are its values.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=presets_epilog,
    )
    add_run_arguments(find)
    find.add_argument("--workers", type=int, default=None,
                      help="training processes of CPU cores / N threads each: on the CPU every population is split "
                      "across them, and models that cannot be stacked train one job per process (default: CPU "
                      "cores, at most trials)")
    find.add_argument("--population", type=int, default=None,
                      help="jobs trained together as one stacked network (default: as many as fit in memory; "
                      "1: one at a time, the reference path)")
    find.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    add_executor_arguments(find)
    find.add_argument("--checkpoint-every", type=float, default=30.0, metavar="SECONDS",
                      help="write a resume checkpoint at most this often during training (default: 30)")
    find.add_argument("--no-report", action="store_true", help="skip drawing the figures at the end")
    find.add_argument("--quiet", action="store_true", help="no progress bar")
    add_log_argument(find)
    add_config_arguments(find)

    report = commands.add_parser("report", help="draw the figures and summary table of a run directory")
    report.add_argument("run_dir", help="a run directory holding results.csv")

    config = commands.add_parser(
        "config", help="print the resolved config of a preset/file with overrides",
        description="Print the config `ticketlab find` would run with the same flags, as JSON (a valid --config "
        f"file). The values shown below are the {DEFAULT_PRESET} preset's.",
    )
    add_config_arguments(config)

    commands.add_parser("presets", help="list the named presets")
    add_sweep_command(commands)
    add_transfer_commands(commands)
    add_verify_command(commands)
    add_analysis_commands(commands)
    add_export_commands(commands)
    add_report_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command in `argv` (default: sys.argv[1:]); returns the exit status."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as stop:  # --help (0), or a usage error already printed on one line (2)
        return stop.code if isinstance(stop.code, int) else EXIT_USER_ERROR
    debug = os.environ.get(DEBUG_VARIABLE, "") not in ("", "0")
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _one_line_warnings()
            return COMMANDS[args.command](args)
    except TicketlabError as error:
        if debug:
            raise
        return _fail(str(error))
    except BrokenPipeError:  # output piped into `head` and the like
        return 0
    except OSError as error:
        message = os_error_message(error)
        if message is None or debug:
            raise
        return _fail(message)
    except (MemoryError, RuntimeError) as error:  # torch's allocators raise RuntimeError subclasses
        if debug or not _out_of_memory(error):
            raise
        return _fail(f"out of memory ({_first_line(error)}); use a smaller model (model.hidden, model.width), "
                     "train.batch_size or --population, or another --device")
    except KeyboardInterrupt:
        print("\nticketlab: interrupted; finished work is saved, run the same command again to resume",
              file=sys.stderr)
        return EXIT_INTERRUPTED


def _fail(message: str) -> int:
    print(f"ticketlab: error: {' '.join(message.split())}", file=sys.stderr)
    return EXIT_USER_ERROR


def _out_of_memory(error: BaseException) -> bool:
    text = str(error)
    return isinstance(error, MemoryError) or type(error).__name__ == "OutOfMemoryError" or (
        "can't allocate memory" in text or "CUDA out of memory" in text)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    marker = text.find("you tried to allocate")
    return text[marker:].split(".")[0] if marker >= 0 else (text.splitlines() or [type(error).__name__])[0][:200]


def _one_line_warnings():
    """A warnings.showwarning that prints each distinct warning once, as one line."""
    shown: set[str] = set()

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        text = " ".join(str(message).split())
        if text not in shown:
            shown.add(text)
            print(f"ticketlab: warning: {text}", file=sys.stderr)

    return show


def _find(args: argparse.Namespace) -> int:
    config = resolve_config(args)
    check_run_arguments(args, config)
    executor = executor_options(args)
    limit = None if args.allow_large else PlanLimit()
    if limit is not None:
        check_plan(config, limit)  # what is known before the data is loaded (steps in epochs: after)
    Path(args.root).mkdir(parents=True, exist_ok=True)  # an unwritable --root fails here, before any loading
    from ticketlab.training.distributed import is_leader_process, launched_by_torchrun

    torchrun = launched_by_torchrun()  # each job trains data-parallel on all processes, one job at a time
    workers = args.workers or (1 if torchrun else max(1, min(os.cpu_count() or 1, config.trials)))
    from ticketlab.lottery.experiment import find_tickets, run_directory

    with logging_for(args.log if is_leader_process() else None, run_directory(config, args.root)):
        result = find_tickets(
            config, root=args.root, workers=workers, population=args.population, device=args.device,
            progress=not args.quiet and is_leader_process(), report=not args.no_report,
            checkpoint_interval_s=args.checkpoint_every, plan_limit=limit, **executor,
        )
    if not is_leader_process():  # torchrun: rank 0 prints
        return 0
    from ticketlab.report import read_results, summarize_results
    from ticketlab.report.table import summary_text_table

    print(summary_text_table(summarize_results(read_results(result.results_csv))))
    print(f"\nexperiment: {result.run_dir}")
    print(f"results: {result.results_csv}")
    for kind, path in result.report_files.items():
        print(f"{kind}: {path}")
    return 0


def _report(args: argparse.Namespace) -> int:
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


def _config(args: argparse.Namespace) -> int:
    print(resolve_config(args).to_json())
    return 0


def _presets(args: argparse.Namespace) -> int:
    for name, text in PRESET_HELP.items():
        print(f"{name:28s} {text}")
    return 0


COMMANDS = {
    "find": _find,
    "report": _report,
    "config": _config,
    "presets": _presets,
    "sweep": run_sweep_command,
    "stability": run_analysis_command,
    "masks": run_analysis_command,
    "verify": run_verify_command,
    "transfer": run_transfer_command,
    "transfer-matrix": run_transfer_matrix_command,
    "export": run_export_command,
    "cost": run_export_command,
    "runs": run_runs_command,
    "compare": run_compare_command,
}


if __name__ == "__main__":
    sys.exit(main())
