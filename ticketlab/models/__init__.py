"""Model registry: build a network by name, initialized from an explicit seed."""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from ticketlab.errors import ConfigError
from ticketlab.models.mlp import MLP, mlp_input_size

MODEL_HIDDEN_WIDTHS = {"lenet300_100": (300, 100)}


def build_model(
    name: str, input_shape: tuple[int, ...], num_classes: int, *, hidden: tuple[int, ...] = (100, 100)
) -> nn.Module:
    """An uninitialized-by-us network (torch default init); call `initialize` to seed its weights."""
    if name == "mlp":
        return MLP(mlp_input_size(input_shape), tuple(hidden), num_classes)
    if name in MODEL_HIDDEN_WIDTHS:
        return MLP(mlp_input_size(input_shape), MODEL_HIDDEN_WIDTHS[name], num_classes)
    raise ConfigError(f"unknown model.name {name!r}; allowed: mlp, {', '.join(MODEL_HIDDEN_WIDTHS)}")


def initialize(model: nn.Module, scheme: str, seed: int) -> nn.Module:
    """Re-draw every parameter of `model` in place from `seed` (no global RNG is touched); returns it.

    'glorot_normal' / 'glorot_uniform' / 'kaiming_normal' set Linear and Conv weights and zero their biases;
    other modules (and every module under 'torch_default') use their own reset_parameters().
    """
    generator = torch.Generator().manual_seed(seed)
    with _seeded_global_rng(seed):  # for reset_parameters(), which only knows the global RNG
        for module in model.modules():
            weight = getattr(module, "weight", None)
            is_weight_layer = isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d))
            if scheme != "torch_default" and is_weight_layer:
                with torch.no_grad():
                    if scheme == "glorot_normal":
                        nn.init.xavier_normal_(weight, generator=generator)
                    elif scheme == "glorot_uniform":
                        nn.init.xavier_uniform_(weight, generator=generator)
                    elif scheme == "kaiming_normal":
                        nn.init.kaiming_normal_(weight, nonlinearity="relu", generator=generator)
                    else:
                        raise ConfigError(f"unknown model.init {scheme!r}")
                    if module.bias is not None:
                        module.bias.zero_()
            elif hasattr(module, "reset_parameters") and not list(module.children()):
                module.reset_parameters()
    return model


@contextlib.contextmanager
def _seeded_global_rng(seed: int):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield
