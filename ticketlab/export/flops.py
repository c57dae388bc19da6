"""Cost accounting arithmetic, torch-free: parameters and FLOPs per inference of each weight layer.

A FLOP here is one multiply or one add: a weight applied at one output position costs a multiply-accumulate,
2 FLOPs. Counted are the Linear and Conv weights (the layers that hold all but a fraction of a percent of the
work in these networks); biases, BatchNorm, activations, pooling and embedding lookups are not. *Dense-equivalent*
FLOPs count every weight of the layer's shape, *effective* FLOPs only its nonzero weights (what a sparse kernel,
or the physically smaller compact network, has to compute).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

FLOPS_PER_MAC = 2


@dataclass(frozen=True)
class LayerCost:
    """One weight tensor's cost for one example: `positions` is how often each weight is applied (1 for a Linear
    on a vector, H_out * W_out for a 2-d convolution, 0 for an embedding lookup)."""

    name: str
    kind: str  # 'linear', 'conv', 'embedding', ...
    weights: int  # entries of the weight tensor
    nonzero: int  # its nonzero entries
    positions: int

    @property
    def dense_flops(self) -> int:
        return FLOPS_PER_MAC * self.weights * self.positions

    @property
    def effective_flops(self) -> int:
        return FLOPS_PER_MAC * self.nonzero * self.positions

    def to_dict(self) -> dict:
        return asdict(self) | {"dense_flops": self.dense_flops, "effective_flops": self.effective_flops}


@dataclass(frozen=True)
class ModelCost:
    """A network's layers, and its parameters outside them (biases, norms) as `other_parameters` /
    `other_nonzero`."""

    layers: tuple[LayerCost, ...]
    other_parameters: int = 0
    other_nonzero: int = 0

    @property
    def parameters(self) -> int:
        return sum(layer.weights for layer in self.layers) + self.other_parameters

    @property
    def nonzero_parameters(self) -> int:
        return sum(layer.nonzero for layer in self.layers) + self.other_nonzero

    @property
    def dense_flops(self) -> int:
        return sum(layer.dense_flops for layer in self.layers)

    @property
    def effective_flops(self) -> int:
        return sum(layer.effective_flops for layer in self.layers)

    @property
    def remaining_flops_percent(self) -> float:
        return 100.0 * self.effective_flops / self.dense_flops if self.dense_flops else 100.0

    def totals(self) -> dict:
        return {"parameters": self.parameters, "nonzero_parameters": self.nonzero_parameters,
                "dense_flops": self.dense_flops, "effective_flops": self.effective_flops,
                "remaining_flops_percent": self.remaining_flops_percent}
