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


Keep = dict[str, int] | int  # survivors per tensor (layerwise) or in total across tensors (global)
NM = tuple[int, int]  # an N:M pattern: at most N of every M consecutive weights along the input dimension


def check_n_m(weights: dict[str, torch.Tensor], n_m: NM) -> None:
    """ConfigError naming the first tensor whose input size (the product of its dimensions after the first: a
    Linear's in_features, a Conv's in_channels * kernel) M does not divide, so its groups of M would cross rows."""
    n, m = n_m
    for name, weight in weights.items():
        size = math.prod(weight.shape[1:])
        if size % m:
            raise ConfigError(f"prune.n_m '{n}:{m}' needs every pruned layer's input size to be a multiple of {m}; "
                              f"{name} has input size {size}")


def _n_m_candidates(flat: torch.Tensor, n_m: NM) -> torch.Tensor:
    """`flat` (one tensor's scores in row-major order, rows of a multiple of M) with every entry outside the N
    best of its group of M set to -inf; ties go to the earlier position."""
    n, m = n_m
    groups = flat.view(-1, m)
    best = torch.sort(groups, dim=1, descending=True, stable=True).indices[:, :n]
    inside = torch.zeros_like(groups, dtype=torch.bool).scatter_(1, best, True)
    return torch.where(inside, groups, torch.full_like(groups, -math.inf)).flatten()


def masks_from_scores(scores: dict[str, torch.Tensor], keep: Keep | None = None, *, sparsity: float | None = None,
                      scope: str = "layerwise", layer_sparsity: dict[str, float] | None = None,
                      eligible: Masks | None = None, min_per_tensor: int = 0, n_m: NM | None = None) -> Masks:
    """The one place scores (higher = keep) become a 0/1 mask, for every score and unit (weights or channels).

    How many survive: `keep`, per tensor (a dict) or in total across tensors (an int), as a lottery keep plan
    holds them; or `sparsity`, the fraction of the eligible entries one round removes: round(rate * remaining) per
    tensor under scope 'layerwise' (`layer_sparsity` overriding the rate of named tensors), round(sparsity *
    remaining) of all tensors together under 'global', as torch.nn.utils.prune does for a float amount.
    Entries outside `eligible` (already pruned) are never kept. Under a total, each tensor's `min_per_tensor`
    best entries are kept first (channel pruning keeps every layer connected). Ties are broken by position, the
    lowest-scoring entries being removed first as torch.topk(largest=False) returns them.

    `n_m` (N, M) constrains every tensor to an N:M pattern along its input dimension: only the N best eligible
    entries of each group of M consecutive entries of a row may survive, and the counts are capped at what the
    pattern allows, so a tensor keeping at least N/M of its entries keeps exactly N of every M.
    """
    if (keep is None) == (sparsity is None):
        raise ValueError("masks_from_scores takes either keep counts or a sparsity")
    flat_scores = {}
    for name, score in scores.items():
        flat = score.detach().flatten().to(torch.float64)
        if eligible is not None:
            flat = torch.where(eligible[name].flatten() > 0, flat, torch.full_like(flat, -math.inf))
        flat_scores[name] = flat
    if keep is None:
        keep = _keep_for_sparsity(scores, sparsity, scope, layer_sparsity or {}, eligible)
    if n_m is not None:
        check_n_m(scores, n_m)
        flat_scores = {name: _n_m_candidates(flat, n_m) for name, flat in flat_scores.items()}
        allowed = {name: int((flat > -math.inf).sum()) for name, flat in flat_scores.items()}
        keep = ({name: min(count, allowed[name]) for name, count in keep.items()} if isinstance(keep, dict)
                else min(keep, sum(allowed.values())))
    if isinstance(keep, dict):
        return {name: _keep_top_flat(flat, keep[name]).view_as(scores[name]) for name, flat in flat_scores.items()}
    forced = {}
    if min_per_tensor:
        forced = {name: _keep_top_flat(flat, min(min_per_tensor, flat.numel())) for name, flat in flat_scores.items()}
        flat_scores = {name: torch.where(forced[name] > 0, torch.full_like(flat, -math.inf), flat)
                       for name, flat in flat_scores.items()}
    rest = max(0, keep - sum(int(kept.sum()) for kept in forced.values())) if forced else keep
    joined_mask = _keep_top_flat(torch.cat(list(flat_scores.values())), rest)
    masks, offset = {}, 0
    for name, score in scores.items():
        part = joined_mask[offset : offset + score.numel()]
        masks[name] = (torch.maximum(part, forced[name]) if forced else part).view_as(score)
        offset += score.numel()
    return masks


def keep_top(scores: dict[str, torch.Tensor], keep: Keep, eligible: Masks | None = None,
             n_m: NM | None = None) -> Masks:
    """Keep the highest-scoring eligible weights: `keep` per layer (dict) or in total across layers (int), in the
    N:M pattern `n_m` when given; see `masks_from_scores`."""
    return masks_from_scores(scores, keep, eligible=eligible, n_m=n_m)


def _keep_for_sparsity(scores: dict[str, torch.Tensor], sparsity: float, scope: str,
                       layer_sparsity: dict[str, float], eligible: Masks | None) -> Keep:
    if scope == "global" and layer_sparsity:
        raise ConfigError("per-layer sparsities need scope 'layerwise'; scope 'global' ranks all layers together")
    remaining = {name: score.numel() if eligible is None else int((eligible[name] > 0).sum())
                 for name, score in scores.items()}
    rates = {name: layer_sparsity.get(name, sparsity) for name in scores} if scope == "layerwise" else {"all": sparsity}
    return next_keep_counts(remaining, rates, scope)


def _keep_top_flat(flat_scores: torch.Tensor, keep: int) -> torch.Tensor:
    if not 0 <= keep <= flat_scores.numel():
        raise ConfigError(f"cannot keep {keep} of {flat_scores.numel()} entries")
    mask = torch.zeros(flat_scores.numel(), dtype=torch.float32)
    if keep == 0:
        return mask
    # Removing the lowest (numel - keep) scores, as torch.nn.utils.prune does, fixes tie-breaking.
    remove = flat_scores.numel() - keep
    mask.fill_(1.0)
    if remove:
        mask[torch.topk(flat_scores, remove, largest=False).indices] = 0.0
    return mask


def exponential_keep_schedule(total: Keep, keep: Keep, rounds: int) -> list:
    """Survivors after each of `rounds` rounds: round k keeps total * (keep / total) ** (k / rounds), rounded,
    never increasing, the last exactly `keep` (per layer when `keep` is a dict). SynFlow's iterative schedule."""
    def counts(whole: int, final: int) -> list[int]:
        fraction = final / whole if whole else 1.0
        values = [round(whole * fraction ** (k / rounds)) for k in range(1, rounds)] + [final]
        for index in range(1, len(values)):  # rounding never lets a count grow back
            values[index] = min(values[index], values[index - 1])
        return [max(value, final) for value in values]

    if isinstance(keep, dict):
        per_layer = {name: counts(total[name], keep[name]) for name in keep}
        return [{name: values[k] for name, values in per_layer.items()} for k in range(rounds)]
    return counts(total, keep)


def shuffle_within_layers(masks: Masks, seed: int, n_m: NM | None = None) -> Masks:
    """Each layer's mask with its entries permuted at random (same count per layer): Frankle et al. (2021)'s
    layer-wise shuffling control. Under an N:M pattern the groups of M are permuted within the layer and the entries
    within each group, so the shuffled mask keeps the pattern (and each group's count)."""
    generator = torch.Generator().manual_seed(seed)
    if n_m is None:
        return {name: mask.flatten()[torch.randperm(mask.numel(), generator=generator)].view_as(mask)
                for name, mask in masks.items()}
    shuffled = {}
    for name, mask in masks.items():
        groups = mask.flatten().view(-1, n_m[1])
        groups = groups[torch.randperm(groups.shape[0], generator=generator)]
        within = torch.argsort(torch.rand(groups.shape, generator=generator), dim=1)
        shuffled[name] = torch.gather(groups, 1, within).view_as(mask)
    return shuffled
