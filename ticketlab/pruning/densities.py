"""Layer densities for a target overall density: uniform, Erdős–Rényi (ER, Mocanu et al. 2018) and
Erdős–Rényi-Kernel (ERK, Evci et al. 2020). Any method that must decide how many weights each layer keeps before
it has scores to rank (sparse training from scratch, pruning at a fixed budget) reads them here, then hands the
counts to `masks_from_scores` as a per-layer keep plan.

ER gives a layer density ε·(n_in + n_out)/(n_in·n_out); ERK adds the kernel: ε·(sum of the weight's dimensions) /
(their product). ε is chosen so the whole network keeps `density` of its weights; a layer whose density would
exceed 1 is made dense and the rest of the budget is shared again among the others (RigL's `get_sparsities`).
Torch-free: the layers are given by their shapes.
"""

from __future__ import annotations

import math

from ticketlab.errors import ConfigError

DISTRIBUTIONS = ("uniform", "er", "erk")


def layer_densities(shapes: dict[str, tuple[int, ...]], density: float, distribution: str = "uniform"
                    ) -> dict[str, float]:
    """Fraction of each layer's weights kept (weight name -> density in (0, 1]) so that the network keeps
    `density` of all its weights. `shapes`: weight name -> shape in PyTorch order (out, in, *kernel)."""
    if distribution not in DISTRIBUTIONS:
        raise ConfigError(f"unknown layer density distribution {distribution!r}; allowed: {', '.join(DISTRIBUTIONS)}")
    if not 0 < density <= 1:
        raise ConfigError(f"density {density!r} must be in (0, 1]")
    if distribution == "uniform":
        return {name: float(density) for name in shapes}
    raw = {name: _raw_density(shape, distribution) for name, shape in shapes.items()}
    sizes = {name: math.prod(shape) for name, shape in shapes.items()}
    dense: set[str] = set()
    while True:
        # weights the sparse layers share: the budget, less what the dense layers keep beyond `density`
        budget = sum(sizes.values()) * density - sum(sizes[name] for name in dense)
        divisor = sum(raw[name] * sizes[name] for name in shapes if name not in dense)
        if divisor == 0:  # every layer dense
            return {name: 1.0 for name in shapes}
        epsilon = budget / divisor
        largest = max(raw[name] for name in shapes if name not in dense)
        if epsilon * largest <= 1:
            return {name: 1.0 if name in dense else epsilon * raw[name] for name in shapes}
        dense |= {name for name in shapes if name not in dense and raw[name] == largest}


def layer_keep_counts(shapes: dict[str, tuple[int, ...]], density: float, distribution: str = "uniform"
                      ) -> dict[str, int]:
    """Weights each layer keeps (rounded), a per-layer keep plan for `masks_from_scores`."""
    densities = layer_densities(shapes, density, distribution)
    return {name: min(math.prod(shape), round(densities[name] * math.prod(shape))) for name, shape in shapes.items()}


def _raw_density(shape: tuple[int, ...], distribution: str) -> float:
    dims = tuple(shape[:2]) if distribution == "er" else tuple(shape)
    return sum(dims) / math.prod(dims)
