"""The one-line value checks every config section uses (core sections and the sections tasks register).

Each raises ConfigError naming the field, the bad value and what is allowed, so `ticketlab` prints one line.
"""

from __future__ import annotations

import math
from typing import Any

from ticketlab.config.steps import check_step_unit, step_count
from ticketlab.errors import ConfigError


def check_choice(label: str, value: Any, allowed: tuple[str, ...], allow_custom: bool = False) -> None:
    """`value` is one of `allowed` (or, with `allow_custom`, a 'custom:...' name a user's code resolves)."""
    if value in allowed or (allow_custom and isinstance(value, str) and value.startswith("custom:")):
        return
    raise ConfigError(f"unknown {label} {value!r}; allowed: {', '.join(allowed)}")


def check_number(label: str, value: Any, low: float | None, high: float | None, *, low_open: bool = False,
                 high_open: bool = False, what: str = "a number") -> None:
    """A finite int/float within [low, high] (bounds None: unbounded; *_open: that end excluded)."""
    inside = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if inside and low is not None:
        inside = value > low if low_open else value >= low
    if inside and high is not None:
        inside = value < high if high_open else value <= high
    if inside:
        return
    if low is not None and high is not None:
        allowed = f"{what} in " if what else "in "
        allowed += f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    elif low is not None:
        allowed = f"a finite number {'>' if low_open else '>='} {low:g}"
    else:
        allowed = "a finite number"
    raise ConfigError(f"{label} {value!r} must be {allowed}")


def check_int(label: str, value: Any, low: int | None, high: int | None = None, unset_ok: bool = False) -> None:
    """An integer (not a bool) within [low, high]; None passes when `unset_ok`."""
    if value is None and unset_ok:
        return
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigError(f"{label} {value!r} must be an integer{' or unset' if unset_ok else ''}")
    if low is not None and value < low:
        raise ConfigError(f"{label} {value} must be >= {low}{' or unset' if unset_ok else ''}")
    if high is not None and value > high:
        raise ConfigError(f"{label} {value} is too large: at most {high:,}")


def check_bool(label: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"{label} {value!r} must be true or false")


def check_step(label: str, text: Any) -> None:
    """A step string with its unit ('500it', '40ep')."""
    if not isinstance(text, str):
        raise ConfigError(f"{label} {text!r} must be a step such as '500it' or '40ep'")
    try:
        step_count(text)
    except ConfigError as error:
        raise ConfigError(f"{label}: {error}") from None
    check_step_unit(label, text)
