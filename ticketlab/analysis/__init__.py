"""Analyses of trained networks: linear mode connectivity, stability to data order and pruning, mask overlap.

- ``connectivity``: interpolate state dicts, evaluate the path, error barrier, BatchNorm recomputation;
- ``distance``: weight distances between two networks; ``copies``: training copies from one starting point;
- ``stability``: `stability_analysis(run_dir)`, data-order and pruning stability and instability of a run;
- ``masks``: Jaccard overlaps and per-layer remaining fractions, `mask_analysis(run_dir)`;
- ``figures``: the PNG figures of both analyses; ``cli``: the `stability` and `masks` subcommands.

Names below are imported on first use, so importing this package (as the CLI does) does not import torch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "barrier": "connectivity",
    "evaluate_path": "connectivity",
    "interpolate_states": "connectivity",
    "recompute_batchnorm": "connectivity",
    "PathEvaluation": "connectivity",
    "StabilitySettings": "stability",
    "StabilityResult": "stability",
    "WeightDistance": "distance",
    "data_order_stability": "copies",
    "stability_analysis": "stability",
    "train_from": "copies",
    "weight_distance": "distance",
    "chance_jaccard": "masks",
    "jaccard": "masks",
    "mask_analysis": "masks",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"ticketlab.analysis.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'ticketlab.analysis' has no attribute {name!r}")
