"""The command line's shared words: one flag means one thing in every command, old spellings keep working.

`--levels N` and `--trials N` say how many (pruning rounds, repetitions: they set the config); `--level` and
`--trial` say which ones of a finished run (one index, or a comma list where a command takes several);
`--rewind` is the rewind step, a comma list where a command compares several (sweep, stability); `--variants`
lists the variants to run and `--variant` picks one of a run's. docs/cli.md holds the table. An old spelling
(`transfer --levels 0,2`, `stability --trials 0,1`, `sweep --rewinds ...`) is still read, and the command, once it
has succeeded, adds one warning line naming the new one: a refused command keeps its single error line.

Errors name the flag as the user typed it, so `--levels 'a,b'` is reported as `--levels`, `--level 'a,b'` as
`--level`. Torch-free.
"""

from __future__ import annotations

import argparse

_SPELLED = "_spelled"  # namespace attribute: dest -> the option string the user typed
_DEPRECATED = "_deprecated"  # namespace attribute: (old spelling, new spelling) pairs, in the order typed


class _Spelled(argparse.Action):
    """Store the value, remember which spelling gave it, and note an old spelling for its warning."""

    def __init__(self, option_strings, dest, replaces=None, **kwargs):
        super().__init__(option_strings, dest, **kwargs)
        self.replaces = replaces  # for an old spelling: the flag that replaces it

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        setattr(namespace, _SPELLED, {**getattr(namespace, _SPELLED, {}), self.dest: option_string})
        if self.replaces is not None:
            setattr(namespace, _DEPRECATED, [*getattr(namespace, _DEPRECATED, []), (option_string, self.replaces)])


def add_flag(parser: argparse.ArgumentParser, flag: str, *, old: tuple[str, ...] = (), aliases: tuple[str, ...] = (),
             **kwargs) -> argparse.Action:
    """`parser.add_argument(flag, *aliases, ...)` that also reads the `old` spellings (left out of --help, warned
    about). With `old`, `required` is left to the command (argparse would not count an old spelling as the flag)."""
    action = parser.add_argument(flag, *aliases, action=_Spelled, **kwargs)
    for spelling in old:
        parser.add_argument(spelling, action=_Spelled, replaces=flag, dest=action.dest, default=argparse.SUPPRESS,
                            type=kwargs.get("type"), help=argparse.SUPPRESS)
    return action


def typed(args: argparse.Namespace, dest: str, flag: str) -> str:
    """The spelling the user typed for `dest` (for error messages), else `flag`."""
    return getattr(args, _SPELLED, {}).get(dest) or flag


def deprecation_warnings(args: argparse.Namespace) -> list[str]:
    """One line per old spelling used in `args`, naming the spelling that replaces it."""
    command = getattr(args, "command", None)
    return [f"{command} {old} is an old spelling of {new}; write {new} (the old one will go)"
            for old, new in dict.fromkeys(getattr(args, _DEPRECATED, []))]


def add_level_selection(parser: argparse.ArgumentParser, *, dest: str, help: str,
                        old: tuple[str, ...] = ("--levels",), metavar: str = "LEVELS", **kwargs) -> None:
    """`--level`: which levels of a finished run (0 = the dense network)."""
    add_flag(parser, "--level", old=old, dest=dest, metavar=metavar, help=help, **kwargs)


def add_trial_selection(parser: argparse.ArgumentParser, *, dest: str, help: str,
                        old: tuple[str, ...] = ("--trials",), metavar: str = "TRIALS", **kwargs) -> None:
    """`--trial`: which trials of a finished run."""
    add_flag(parser, "--trial", old=old, dest=dest, metavar=metavar, help=help, **kwargs)


def add_rewind_list(parser: argparse.ArgumentParser, *, dest: str, help: str, default=None,
                    old: tuple[str, ...] = ()) -> None:
    """`--rewind` as a comma list of rewind steps, for the commands that compare several."""
    add_flag(parser, "--rewind", old=old, dest=dest, default=default, metavar="STEPS", help=help)


def comma_items(text: str | None, flag: str) -> tuple[str, ...] | None:
    """'0it, 5it' -> ('0it', '5it'); None stays None; ConfigError for an empty list or a repeat."""
    from ticketlab.errors import ConfigError

    if text is None:
        return None
    items = tuple(item.strip() for item in text.split(",") if item.strip())
    if not items:
        raise ConfigError(f"{flag} {text!r} lists nothing")
    _refuse_repeats(items, text, flag)
    return items


def comma_integers(text: str | None, flag: str) -> tuple[int, ...] | None:
    """'0,3' -> (0, 3); ConfigError for a non-integer or a repeat (1 and 01 are the same index)."""
    from ticketlab.errors import ConfigError

    items = comma_items(text, flag)
    if items is None:
        return None
    try:
        numbers = tuple(int(item) for item in items)
    except ValueError:
        raise ConfigError(f"{flag} {text!r} must be comma-separated integers") from None
    _refuse_repeats(numbers, text, flag)
    return numbers


def _refuse_repeats(items: tuple, text: str, flag: str) -> None:
    from ticketlab.errors import ConfigError

    repeated = next((item for index, item in enumerate(items) if item in items[:index]), None)
    if repeated is not None:
        raise ConfigError(f"{flag} {text!r} lists {repeated} more than once; list each at most once")
