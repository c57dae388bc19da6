"""Tickets as usable models: torch.nn.utils.prune convention, dense, compact, sparse and ONNX exports, and the
parameter / FLOP accounting of a run.

Names load on first use, so importing the package stays torch-free (`ticketlab --help` never loads torch).
"""

from importlib import import_module

_EXPORTS = {
    "FORMATS": "api", "TOLERANCE": "api", "ExportCheckError": "api", "ExportResult": "api", "Ticket": "api",
    "export_ticket": "api", "load_export": "api", "load_ticket": "api",
    "compact_model": "ticketlab.pruning.compact", "removable_channels": "ticketlab.pruning.compact",
    "model_cost": "cost", "LayerCost": "flops", "ModelCost": "flops", "run_cost": "run_cost",
    "sparse_model": "sparse", "export_reusable_ticket": "reusable",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'ticketlab.export' has no attribute {name!r}")
    module = _EXPORTS[name]  # a submodule of this package, or a full module name (the compact network is pruning's)
    return getattr(import_module(module if "." in module else f"ticketlab.export.{module}"), name)
