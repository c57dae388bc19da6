"""ticketlab: find sparse, trainable subnetworks (winning tickets) in dense networks, and study them.

Quick start::

    import ticketlab
    config = ticketlab.preset("mnist1d").replace(trials=1)
    result = ticketlab.find_tickets(config)
    print(result.results_csv)

Heavy modules (torch) load on first use, so importing ticketlab is cheap.
"""

from __future__ import annotations

import importlib

from ticketlab.config import (
    DataConfig,
    ExperimentConfig,
    ModelConfig,
    PruneConfig,
    TrainConfig,
    config_from_dict,
    load_config,
)
from ticketlab.errors import ConfigError, DataError, TicketlabError
from ticketlab.tasks import TASKS as _TASKS  # noqa: F401  loads the built-in tasks: their config sections and checks
from ticketlab.presets import preset
from ticketlab.version import __version__  # noqa: F401  (ticketlab.__version__)

_LAZY = {
    "find_tickets": "ticketlab.api",
    "ExperimentResult": "ticketlab.lottery.experiment",
    "run_directory": "ticketlab.lottery.experiment",
    "make_splits": "ticketlab.data.splits",
    "load_dataset": "ticketlab.data",
    "write_report": "ticketlab.report",
    "train_model": "ticketlab.training.loop",
    "transfer_tickets": "ticketlab.api",
    "target_config_for": "ticketlab.lottery.transfer",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ticketlab' has no attribute {name!r}")


__all__ = [
    "ConfigError",
    "DataConfig",
    "DataError",
    "ExperimentConfig",
    "ModelConfig",
    "PruneConfig",
    "TicketlabError",
    "TrainConfig",
    "config_from_dict",
    "load_config",
    "preset",
    *_LAZY,
]
