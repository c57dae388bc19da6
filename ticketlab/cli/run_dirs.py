"""The check every command over a finished run makes first: the directory exists (and its config is sound)."""

from __future__ import annotations

from pathlib import Path

from ticketlab.errors import ConfigError


def check_run_dir(run_dir: str, needs_config: bool = False) -> None:
    """The run directory exists; with `needs_config`, its config.json is a readable, valid config."""
    path = Path(run_dir)
    if not path.is_dir():
        raise ConfigError(f"run directory {run_dir!r} {'is not a directory' if path.exists() else 'does not exist'}")
    if needs_config:
        from ticketlab.lottery.integrity import read_run_config

        if not (path / "config.json").is_file():
            raise ConfigError(f"{run_dir!r} is not a run directory of `ticketlab find` (no config.json)")
        read_run_config(path)  # checked against its hash, as every command reading a run checks it
