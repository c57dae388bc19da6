"""What differs between configs: a run's config against its preset, and several runs' configs against each other.

Configs are compared as flat dotted-path dicts (`train.lr`), the same names `--SECTION.FIELD` takes. A run
records the command that made it (provenance.json); when that names `--preset`, the run is compared with that
preset, otherwise with the closest preset of its task (the one with the fewest differing values), and the
report says which of the two it did.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Any

MISSING = "—"


@dataclass(frozen=True)
class Baseline:
    """The config a run is compared with: a preset's name, whether the run recorded it, and the differences."""

    preset: str
    recorded: bool  # True: the run's command named this preset; False: the closest preset, inferred
    differences: list[tuple[str, Any, Any]]  # (dotted name, run's value, preset's value)


def flatten(values: dict, prefix: str = "") -> dict[str, Any]:
    """{'train': {'lr': 0.1}} -> {'train.lr': 0.1}; lists become tuples (comparable, hashable)."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = _frozen(value)
    return flat


def differences(*configs: dict) -> list[tuple[str, ...]]:
    """(dotted name, value in each config...) for every name whose values are not all equal, sorted by name."""
    flats = [flatten(config) for config in configs]
    names = sorted(set().union(*flats))
    rows = []
    for name in names:
        values = [flat.get(name, MISSING) for flat in flats]
        if any(value != values[0] for value in values[1:]):
            rows.append((name, *values))
    return rows


def preset_in_command(command: str | None) -> str | None:
    """The preset a recorded `ticketlab find` command line names, or the default preset for a `find` without
    --preset and --config; None when the command says nothing about one (a script, a config file)."""
    if not command:
        return None
    try:
        words = shlex.split(command)
    except ValueError:
        return None
    for index, word in enumerate(words):
        if word == "--preset" and index + 1 < len(words):
            return words[index + 1]
        if word.startswith("--preset="):
            return word.split("=", 1)[1]
    from_cli = len(words) > 1 and words[1] == "find" and words[0].endswith(("ticketlab", "__main__.py"))
    if from_cli and not any(word == "--config" or word.startswith("--config=") for word in words):
        from ticketlab.presets import DEFAULT_PRESET

        return DEFAULT_PRESET
    return None


def preset_baseline(config: dict, command: str | None = None) -> Baseline | None:
    """The run's `config` against the preset its command named, else against the closest preset of its task."""
    from ticketlab.errors import TicketlabError
    from ticketlab.presets import PRESETS, preset

    named = preset_in_command(command)
    if named in PRESETS:
        return Baseline(named, True, _against(config, preset(named).to_dict()))
    best: Baseline | None = None
    for name in PRESETS:
        try:
            candidate = preset(name).to_dict()
        except TicketlabError:
            continue
        if candidate.get("task") != config.get("task"):
            continue
        found = _against(config, candidate)
        if best is None or len(found) < len(best.differences):
            best = Baseline(name, False, found)
    return best


def format_value(value: Any) -> str:
    """A config value as the command line would take it (tuples comma-separated, None as 'none')."""
    if value is None:
        return "none"
    if isinstance(value, tuple):
        return ",".join(format_value(item) for item in value) or "(empty)"
    return str(value)


def _against(config: dict, baseline: dict) -> list[tuple[str, Any, Any]]:
    return [(name, ours, theirs) for name, ours, theirs in differences(config, baseline)]


def _frozen(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_frozen(item) for item in value)
    return value
