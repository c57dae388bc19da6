"""torch.nn.utils.prune's convention: each pruned tensor as `NAME_orig` (the parameter) and `NAME_mask` (a buffer).

Masks are stored as bool (a quarter of float32's bytes). The export is a safetensors state dict in that convention; `load_prune_convention` gives any module of the same
architecture the forward pre-hooks of `torch.nn.utils.prune` and loads it, so code written for that module
(`prune.is_pruned`, `prune.remove`, iterating `named_buffers()` for masks) works on a ticket unchanged.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import prune


def prune_convention_tensors(model: nn.Module, masks: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`model.state_dict()` with every masked tensor NAME replaced by NAME_orig (the weights) and NAME_mask."""
    state = {name: value.detach().clone() for name, value in model.state_dict().items()}
    for name, mask in masks.items():
        weight = state.pop(name)
        state[f"{name}_orig"] = weight
        state[f"{name}_mask"] = mask.bool()  # load_state_dict copies it into prune's float buffer
    return state


def load_prune_convention(model: nn.Module, tensors: dict[str, torch.Tensor]) -> nn.Module:
    """Attach torch.nn.utils.prune reparametrizations to `model` for every NAME_mask in `tensors` and load them
    (in place; returns `model`)."""
    modules = dict(model.named_modules())
    for key in tensors:
        if key.endswith("_mask"):
            module_name, _, tensor_name = key[: -len("_mask")].rpartition(".")
            prune.identity(modules[module_name], tensor_name)
    model.load_state_dict(tensors)
    return model
