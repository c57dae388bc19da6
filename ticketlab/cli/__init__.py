"""Command line: a thin layer that builds an ExperimentConfig and calls the Python API; one module per command.

Every error the user can cause (a bad value or file, an unwritable path, a full disk, a missing dataset) ends the
command with status 2 and one line on stderr; `TICKETLAB_DEBUG=1` shows its traceback instead. Internal errors
keep their traceback. Importing this package must not import torch (`ticketlab --help` stays fast); commands
import it when they run. Each command module has `add_command(subparsers)` and `run(args) -> exit status`; the
words they share (`--level`, `--trial`, `--rewind`, the execution flags) are in vocabulary.py and execution_args.py.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import warnings

from ticketlab.cli import (
    compare,
    config,
    cost,
    export,
    find,
    masks,
    presets,
    report,
    runs,
    stability,
    sweep,
    transfer,
    transfer_matrix,
    verify,
)
from ticketlab.cli.vocabulary import deprecation_warnings
from ticketlab.errors import TicketlabError, os_error_message

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
        if "--task-module" in message and "unrecognized" in message:
            message += "; --task-module goes before the command: ticketlab --task-module FILE COMMAND ..."
        self.exit(EXIT_USER_ERROR, f"ticketlab: error: {message} (see {self.prog} --help)\n")


# in the order `ticketlab --help` lists them
COMMAND_MODULES = (find, report, config, presets, sweep, transfer, transfer_matrix, verify, stability, masks, export,
                   cost, runs, compare)
COMMANDS = {module.NAME: module.run for module in COMMAND_MODULES}


def build_parser() -> argparse.ArgumentParser:
    parser = CommandLineParser(
        prog="ticketlab",
        description="Find winning lottery tickets (iterative magnitude pruning) and study them.",
        epilog=f"User errors exit with status 2 and one line on stderr; {DEBUG_VARIABLE}=1 shows the traceback.",
    )
    parser.add_argument("--task-module", action="append", default=[], metavar="FILE_OR_MODULE",
                        help="import a .py file or module that defines your own tasks (ticketlab.tasks.simple."
                        "simple_task) before the command runs; repeatable. Give it to every command on that task's runs")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    for module in COMMAND_MODULES:
        module.add_command(commands)
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
            if args.task_module:
                from ticketlab.tasks.user_modules import import_task_module

                for source in args.task_module:
                    import_task_module(source)
            status = COMMANDS[args.command](args)
        for line in deprecation_warnings(args):  # after the command: a refused one keeps its one error line
            print(f"ticketlab: warning: {line}", file=sys.stderr)
        return status
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
