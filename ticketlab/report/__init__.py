"""Lottery-ticket reports (figure + tables) from a run's ``results.csv``.

Needs only numpy and matplotlib (no torch). Names are imported on first use (PEP 562), so the command-line
modules of this package (`ticketlab runs`, `compare`) load without matplotlib until they draw.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "write_report": "ticketlab.report.report",
    "read_results": "ticketlab.lottery.results_csv",  # the reader lives with the writer
    "summarize_results": "ticketlab.report.results",
}


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'ticketlab.report' has no attribute {name!r}")


__all__ = ["read_results", "summarize_results", "write_report"]
