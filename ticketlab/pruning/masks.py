"""Masks: which tensors are prunable, and how scores become a mask for a sparsity and a scope.

A pruning strategy only supplies scores (higher = keep); every mask decision is made here. Masks are
float tensors of 0.0/1.0 with the weight's shape, keyed by parameter name ("layers.1.weight").
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ticketlab.errors import ConfigError

PRUNABLE_MODULE_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Embedding)
RECURRENT_MODULE_TYPES = (nn.RNNBase,)  # nn.LSTM, nn.GRU, nn.RNN
# The weight matrices of a recurrent module: input-hidden, hidden-hidden and (LSTM proj_size) projection, every
# layer and direction (`weight_ih_l0`, `weight_hh_l1_reverse`, ...); its biases are left out.
RECURRENT_WEIGHT_PREFIXES = ("weight_ih_l", "weight_hh_l", "weight_hr_l")

Masks = dict[str, torch.Tensor]


def prunable_weights(model: nn.Module) -> dict[str, nn.Parameter]:
    """The weight tensors of Linear/Conv/Embedding modules and the weight matrices of LSTM/GRU/RNN modules, in
    module order; biases and norms excluded. A Parameter shared by two modules (a decoder tied to its embedding)
    appears once, under its first name, as in `model.named_parameters()`."""
    weights, seen = {}, set()
    for module_name, module in model.named_modules():
        prefix = f"{module_name}." if module_name else ""
        if isinstance(module, PRUNABLE_MODULE_TYPES) and module.weight is not None:
            candidates = [("weight", module.weight)]
        elif isinstance(module, RECURRENT_MODULE_TYPES):
            candidates = [(name, parameter) for name, parameter in module.named_parameters(recurse=False)
                          if name.startswith(RECURRENT_WEIGHT_PREFIXES)]
        else:
            continue
        for name, parameter in candidates:
            if id(parameter) not in seen:
                seen.add(id(parameter))
                weights[prefix + name] = parameter
    return weights


def output_weight_names(model: nn.Module, prunable=prunable_weights) -> tuple[str, ...]:
    """The prunable weights that compute the model's outputs (the layers `prune.output_rate` prunes), under the
    names `prunable(model)` lists them by.

    The model names them: `model.output_weights()` returns its output Parameters (a classifier's last layer, both
    heads of an actor-critic, a language model's decoder). Matching is by identity, not by name, so a Parameter
    shared by an input and the output layer (a decoder tied to its embedding) is an output weight, listed under
    the name `prunable` gives it (the embedding's). A model without `output_weights()` (a custom module): the weight
    of its last Linear/Conv/Embedding/RNN module in registration order, a shared module or Parameter counted at
    every place it is registered, so a tied decoder registered last is still found. Output weights that
    `prunable` leaves out are skipped (the result may then be empty).
    """
    weights = prunable(model)
    declared = getattr(model, "output_weights", None)
    outputs = list(declared()) if callable(declared) else _last_registered_weight(model)
    name_of = {id(weight): name for name, weight in weights.items()}
    names: list[str] = []
    for parameter in outputs:
        name = name_of.get(id(parameter))
        if name is not None and name not in names:
            names.append(name)
    return tuple(names)


def _last_registered_weight(model: nn.Module) -> list[nn.Parameter]:
    last: list[nn.Parameter] = []
    for module in model.modules(remove_duplicate=False):
        if isinstance(module, PRUNABLE_MODULE_TYPES) and module.weight is not None:
            last = [module.weight]
        elif isinstance(module, RECURRENT_MODULE_TYPES):
            matrices = [parameter for name, parameter in module.named_parameters(recurse=False)
                        if name.startswith(RECURRENT_WEIGHT_PREFIXES)]
            last = matrices[-1:] or last
    return last


def output_layer_name(model: nn.Module) -> str:
    """The first of the model's output weights (`output_weight_names`): a classifier's last layer, which the paper
    prunes at a lower rate and transfer re-initializes."""
    names = output_weight_names(model)
    if not names:
        raise ConfigError(f"model {type(model).__name__} has no prunable Linear/Conv/Embedding/RNN output weight")
    return names[0]


def full_masks(weights: dict[str, torch.Tensor]) -> Masks:
    """All-ones masks (the dense network)."""
    return {name: torch.ones_like(weight, dtype=torch.float32) for name, weight in weights.items()}


def check_masks(masks: Masks, weights: dict[str, torch.Tensor]) -> Masks:
    """Validate that masks cover exactly the prunable weights, have their shapes and hold only 0 and 1."""
    if set(masks) != set(weights):
        raise ConfigError(f"mask names {sorted(masks)} do not match prunable weights {sorted(weights)}")
    for name, mask in masks.items():
        if mask.shape != weights[name].shape:
            raise ConfigError(f"mask {name} has shape {tuple(mask.shape)}, weight has {tuple(weights[name].shape)}")
        if not torch.all((mask == 0) | (mask == 1)):
            raise ConfigError(f"mask {name} holds values other than 0 and 1")
    return {name: mask.to(torch.float32) for name, mask in masks.items()}


def remaining_counts(masks: Masks) -> dict[str, int]:
    return {name: int(mask.sum().item()) for name, mask in masks.items()}


def remaining_percent(masks: Masks) -> float:
    """Percent of prunable weights still unpruned."""
    total = sum(mask.numel() for mask in masks.values())
    return 100.0 * sum(remaining_counts(masks).values()) / total


def next_keep_counts(current: dict[str, int], rates: dict[str, float], scope: str) -> dict[str, int] | int:
    """Survivors after one round: per layer (layerwise) or in total (global).

    A round removes round(rate * remaining) weights, as torch.nn.utils.prune does for a float amount.
    """
    if scope == "layerwise":
        return {name: count - round(rates[name] * count) for name, count in current.items()}
    if scope == "global":
        total = sum(current.values())
        rate = next(iter(rates.values()))
        return total - round(rate * total)
    raise ConfigError(f"unknown prune.scope {scope!r}; allowed: layerwise, global")


def keep_top(scores: dict[str, torch.Tensor], keep: dict[str, int] | int, eligible: Masks | None = None) -> Masks:
    """Keep the highest-scoring eligible weights: `keep` per layer (dict) or in total across layers (int).

    Weights outside `eligible` (already pruned) are never kept. Ties are broken by position, the
    lowest-scoring weights being removed first as torch.topk(largest=False) returns them.
    """
    masked_scores = {}
    for name, score in scores.items():
        flat = score.detach().flatten().to(torch.float64)
        if eligible is not None:
            flat = torch.where(eligible[name].flatten() > 0, flat, torch.full_like(flat, -math.inf))
        masked_scores[name] = flat
    if isinstance(keep, dict):
        return {
            name: _keep_top_flat(flat, keep[name]).view_as(scores[name]) for name, flat in masked_scores.items()
        }
    joined = torch.cat(list(masked_scores.values()))
    joined_mask = _keep_top_flat(joined, keep)
    masks, offset = {}, 0
    for name, score in scores.items():
        masks[name] = joined_mask[offset : offset + score.numel()].view_as(score)
        offset += score.numel()
    return masks


def _keep_top_flat(flat_scores: torch.Tensor, keep: int) -> torch.Tensor:
    if not 0 <= keep <= flat_scores.numel():
        raise ConfigError(f"cannot keep {keep} of {flat_scores.numel()} weights")
    mask = torch.zeros(flat_scores.numel(), dtype=torch.float32)
    if keep == 0:
        return mask
    # Removing the lowest (numel - keep) scores, as torch.nn.utils.prune does, fixes tie-breaking.
    remove = flat_scores.numel() - keep
    mask.fill_(1.0)
    if remove:
        mask[torch.topk(flat_scores, remove, largest=False).indices] = 0.0
    return mask
