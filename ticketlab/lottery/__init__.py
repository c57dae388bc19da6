"""Lottery experiments: the job graph of IMP levels and controls, and `find_tickets` to run it.

Names are imported on first use (PEP 562), so the torch-free command line (ticketlab.cli) can import this
package's light modules without torch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "ExperimentResult": "ticketlab.lottery.experiment",
    "find_tickets": "ticketlab.lottery.experiment",
    "run_directory": "ticketlab.lottery.experiment",
    "JobKey": "ticketlab.lottery.jobs",
    "SweepResult": "ticketlab.lottery.sweep",
    "rewind_sweep": "ticketlab.lottery.sweep",
}


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'ticketlab.lottery' has no attribute {name!r}")


__all__ = sorted(_EXPORTS)
