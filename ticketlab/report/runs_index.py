"""`ticketlab runs [ROOT]`: an index of the run directories under a root, newest first. Torch-free."""

from __future__ import annotations

import os
from pathlib import Path

from ticketlab.errors import ConfigError
from ticketlab.report.run_state import RunState, format_size, is_run_directory, read_run_state

_SKIPPED = ("trial_", "tensorboard", "report", "analysis", ".")


def find_run_directories(root: str | Path) -> list[Path]:
    """Every run directory (holding config.json) at or under `root`, not looking inside job directories.
    ConfigError if `root` is not a directory."""
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"runs root {str(root)!r} {'is not a directory' if root.exists() else 'does not exist'}")
    found = []
    for folder, dirs, _ in os.walk(root):
        dirs[:] = sorted(name for name in dirs if not name.startswith(_SKIPPED))
        if is_run_directory(Path(folder)):
            found.append(Path(folder))
    return found


def index_runs(root: str | Path, verify: bool = True) -> list[RunState]:
    """The state of every run directory under `root`, the most recently changed first."""
    states = [read_run_state(path, verify=verify) for path in find_run_directories(root)]
    return sorted(states, key=lambda state: state.last_change, reverse=True)


def config_summary(state: RunState) -> str:
    """The preset the run's command named with the count of values changed from it, else its model, data and
    steps."""
    from ticketlab.lottery.provenance import read_sessions
    from ticketlab.presets import PRESETS, preset
    from ticketlab.report.config_diff import differences, preset_in_command

    for session in reversed(read_sessions(state.run_dir)):
        named = preset_in_command(session.get("command"))
        if named in PRESETS and state.config is not None:
            changed = len(differences(state.config, preset(named).to_dict()))
            return f"preset {named}" + (f" +{changed} change{'s' if changed != 1 else ''}" if changed else "")
    config = state.config or {}
    model, data, train = (config.get(name) or {} for name in ("model", "data", "train"))
    return f"{model.get('name', '?')} on {data.get('name', '?')}, {train.get('steps', '?')}"


def runs_table(states: list[RunState], root: Path) -> str:
    """A plain-text table of the index, one run per line."""
    import time

    header = ("run", "task", "config", "variants", "trials", "levels", "state", "size", "last change (UTC)")
    rows = [header]
    for state in states:
        relative = state.run_dir.relative_to(root).as_posix() if state.run_dir != root else "."
        status = state.state + (f" ({state.jobs_left} jobs left)" if state.state == "partial" else "") + (
            f" ({len(state.damage)} file{'s' if len(state.damage) != 1 else ''})" if state.state == "damaged" else "")
        rows.append((relative, state.task, config_summary(state), str(len(state.variants)), str(state.trials),
                     f"{state.levels_done}/{state.levels_planned}", status, format_size(state.size_bytes),
                     time.strftime("%Y-%m-%d %H:%M", time.gmtime(state.last_change))))
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows)
