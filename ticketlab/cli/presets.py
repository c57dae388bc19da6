"""`ticketlab presets`: the named starting configs, one line each."""

from __future__ import annotations

import argparse

from ticketlab.presets import PRESET_HELP

NAME = "presets"


def add_command(subparsers) -> argparse.ArgumentParser:
    return subparsers.add_parser(NAME, help="list the named presets")


def run(args: argparse.Namespace) -> int:
    for name, text in PRESET_HELP.items():
        print(f"{name:28s} {text}")
    return 0
