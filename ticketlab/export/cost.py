"""Cost of a (masked) torch network: traces one example through it to learn how often each weight is applied."""

from __future__ import annotations

import torch
from torch import nn

from ticketlab.export.flops import LayerCost, ModelCost

_KINDS = ((nn.Linear, "linear"), (nn.Conv1d, "conv"), (nn.Conv2d, "conv"), (nn.Conv3d, "conv"),
          (nn.Embedding, "embedding"))


def _kind(module: nn.Module) -> str | None:
    return next((kind for types, kind in _KINDS if isinstance(module, types)), None)


@torch.no_grad()
def model_cost(model: nn.Module, example: torch.Tensor) -> ModelCost:
    """Parameters, nonzero parameters and FLOPs per example of `model` (its current, masked weights) on
    `example` (one input with its batch axis, e.g. [1, 28, 28]). Layers are keyed by weight name."""
    positions: dict[str, int] = {}
    hooks = []
    names = {id(module): name for name, module in model.named_modules()}
    for module in model.modules():
        kind = _kind(module)
        if kind is None:
            continue

        def record(module, inputs, output, kind=kind):
            name = names[id(module)]
            if kind == "linear":  # a Linear on [N, ..., in] applies each weight once per leading position
                applied = output.numel() // (len(example) * module.out_features)
            elif kind == "conv":  # [N, C_out, *spatial]: once per output position
                applied = output[0, 0].numel()
            else:
                applied = 0
            positions[name] = positions.get(name, 0) + applied  # a module called twice costs twice

        hooks.append(module.register_forward_hook(record))
    was_training = model.training
    model.eval()
    try:
        model(example)
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    layers, counted = [], set()
    for name, module in model.named_modules():
        kind = _kind(module)
        if kind is None or module.weight is None:
            continue
        weight = module.weight
        counted.add(id(weight))
        layers.append(LayerCost(f"{name}.weight" if name else "weight", kind, weight.numel(),
                                int(weight.count_nonzero()), positions.get(name, 0)))
    others = [parameter for parameter in model.parameters() if id(parameter) not in counted]
    return ModelCost(tuple(layers), sum(p.numel() for p in others), sum(int(p.count_nonzero()) for p in others))
