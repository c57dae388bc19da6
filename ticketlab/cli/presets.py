"""`ticketlab presets`: the named starting configs, one line each, ending with where its defaults come from."""

from __future__ import annotations

import argparse

from ticketlab.presets import PRESET_HELP, PRESET_SOURCES

NAME = "presets"


def add_command(subparsers) -> argparse.ArgumentParser:
    return subparsers.add_parser(NAME, help="list the named presets and the sources of their defaults")


def run(args: argparse.Namespace) -> int:
    for name, text in PRESET_HELP.items():
        print(f"{name:28s} {text} [source: {PRESET_SOURCES[name]}]")
    return 0
