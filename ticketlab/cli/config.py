"""`ticketlab config`: print the config `find` would run with the same flags, as JSON (a valid --config file)."""

from __future__ import annotations

import argparse

from ticketlab.cli.config_args import DEFAULT_PRESET, add_config_arguments, resolve_config

NAME = "config"


def add_command(subparsers) -> argparse.ArgumentParser:
    config = subparsers.add_parser(
        NAME, help="print the resolved config of a preset/file with overrides",
        description="Print the config `ticketlab find` would run with the same flags, as JSON (a valid --config "
        f"file). The values shown below are the {DEFAULT_PRESET} preset's.",
    )
    add_config_arguments(config)
    return config


def run(args: argparse.Namespace) -> int:
    print(resolve_config(args).to_json())
    return 0
