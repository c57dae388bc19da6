"""Lottery-ticket reports (figure + tables) from a run's ``results.csv``.

Needs only numpy and matplotlib (no torch).
"""

from ticketlab.report.report import write_report
from ticketlab.report.results import read_results, summarize_results

__all__ = ["read_results", "summarize_results", "write_report"]
