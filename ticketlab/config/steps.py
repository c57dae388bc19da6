"""Training lengths and points written as steps: '500it' (iterations) or '40ep' (epochs)."""

from __future__ import annotations

import re

from ticketlab.errors import ConfigError

_STEP_PATTERN = re.compile(r"^\s*(\d+)\s*(it|ep)?\s*$", re.ASCII)
_MAX_STEP_DIGITS = 30  # beyond any plan; also keeps int() far from Python's 4,300-digit limit


def parse_step(text: str, iterations_per_epoch: int | None = None) -> int:
    """Convert a step string ('500it', '40ep', or a bare integer meaning iterations) to iterations.

    Epochs need ``iterations_per_epoch`` (batches per pass over the training set, last partial batch dropped).
    """
    count, unit = step_count(text)
    if unit == "it":
        return count
    if iterations_per_epoch is None:
        raise ConfigError(f"step {text!r} is in epochs but the dataset size is not known here")
    return count * iterations_per_epoch


def step_count(text: str) -> tuple[int, str]:
    """The count and unit ('it' or 'ep') of a step string; ConfigError if it is not one."""
    match = _STEP_PATTERN.match(str(text))
    if not match:
        raise ConfigError(f"invalid step {text!r}: write iterations as '500it' or epochs as '40ep'")
    if len(match.group(1).lstrip("0")) > _MAX_STEP_DIGITS:
        raise ConfigError(f"step {str(text).strip()!r} is too large: at most {_MAX_STEP_DIGITS} digits")
    return int(match.group(1)), match.group(2) or "it"


def check_step_unit(label: str, text: str) -> None:
    """ConfigError for a step a user wrote without its unit ('500'): iterations or epochs must be said."""
    count, unit = step_count(text)
    if not str(text).strip().endswith(unit):
        raise ConfigError(f"{label} {str(text).strip()!r} has no unit; write iterations as '{count}it' or epochs as "
                          f"'{count}ep'")


def comparable_steps(text: str, end_text: str, iterations_per_epoch: int | None) -> tuple[int | None, int | None]:
    """Two step strings as numbers of one unit (iterations once the epoch length is known); (None, None) if not."""
    if iterations_per_epoch is not None:
        return parse_step(text, iterations_per_epoch), parse_step(end_text, iterations_per_epoch)
    (count, unit), (end_count, end_unit) = step_count(text), step_count(end_text)
    if unit == end_unit or count == 0:  # 0 is 0 in either unit
        return count, end_count
    return None, None
