"""MkDocs hook: the CLI reference is written from ticketlab's own argparse parser at build time.

`<!-- cli-summary -->` becomes a table of the commands and their one-line help; `<!-- cli-reference -->` becomes
one section per command holding exactly what `ticketlab COMMAND --help` prints (at 100 columns), so the manual
cannot drift from the parser.
"""

from __future__ import annotations

import argparse
import os


def _commands() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser], dict[str, str]]:
    os.environ["COLUMNS"] = "100"  # argparse wraps to the terminal width; the page must not depend on it
    from ticketlab.cli import build_parser

    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
    return parser, dict(action.choices), helps


def on_page_markdown(markdown: str, page, config, files) -> str:
    if "<!-- cli-summary -->" not in markdown and "<!-- cli-reference -->" not in markdown:
        return markdown
    parser, commands, helps = _commands()
    summary = "| command | what it does |\n| --- | --- |\n" + "\n".join(
        f"| [`ticketlab {name}`](#ticketlab-{name}) | {helps.get(name, '')} |" for name in commands)
    sections = [f"### ticketlab --help\n\n```text\n{parser.format_help().rstrip()}\n```\n"]
    sections += [f"### ticketlab {name}\n\n```text\n{command.format_help().rstrip()}\n```\n"
                 for name, command in commands.items()]
    return (markdown.replace("<!-- cli-summary -->", summary)
            .replace("<!-- cli-reference -->", "\n".join(sections)))
