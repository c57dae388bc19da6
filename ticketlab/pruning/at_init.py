"""Pruning at initialization: scores computed from the untrained network (and, for SNIP and GraSP, a few batches of
its loss), turned into masks by `masks.keep_top` like every other strategy.

- SNIP (Lee et al. 2019): |g ⊙ θ|, g the loss gradient summed over the scoring batches.
- GraSP (Wang et al. 2020): θ ⊙ Hg. The paper removes the weights with the largest -θ ⊙ Hg (pruning them reduces
  gradient flow least); keeping the highest θ ⊙ Hg is the same rule. Hg is a Hessian-gradient product by double
  backward, g the gradient over the scoring batches.
- SynFlow (Tanaka et al. 2020): data-free. The network is linearized (every parameter and buffer replaced by its
  absolute value, float64, evaluation mode), R = sum of its output on an all-ones input, score |θ ⊙ dR/dθ|;
  pruning is iterated over `rounds` rounds, round k keeping the fraction (keep / total) ** (k / rounds).

Losses come from a callable `losses(model)` yielding scalar losses on seeded batches: the task supplies it (see
`ticketlab.tasks.base.Task.score_losses`; which batches, with which seeds and in which order, the lottery jobs
score on: `ticketlab.lottery.at_init.at_init_mask`), so these functions know nothing of data or training. Each
scores a copy of the model: the caller's weights, BatchNorm statistics and gradients are left as they were.
"""

from __future__ import annotations

import copy
from typing import Callable, Iterable

import torch
from torch import nn

from ticketlab.pruning.masks import Masks, keep_top, prunable_weights

Losses = Callable[[nn.Module], Iterable[torch.Tensor]]
Prunable = Callable[[nn.Module], dict[str, nn.Parameter]]


def _scoring_copy(model: nn.Module, prunable: Prunable, masks: Masks | None) -> tuple[nn.Module, dict]:
    scored = copy.deepcopy(model)
    weights = prunable(scored)
    if masks is not None:
        with torch.no_grad():
            for name, weight in weights.items():
                weight.mul_(masks[name].to(weight.device, weight.dtype))
    return scored, weights


def loss_gradient(model: nn.Module, losses: Losses, prunable: Prunable = prunable_weights,
                  masks: Masks | None = None) -> dict[str, torch.Tensor]:
    """dL/dθ of the prunable weights, summed over the losses `losses(model)` yields (on a copy of the model)."""
    scored, weights = _scoring_copy(model, prunable, masks)
    scored.train()
    names, tensors = list(weights), list(weights.values())
    total = [torch.zeros_like(tensor) for tensor in tensors]
    for loss in losses(scored):
        for accumulated, grad in zip(total, torch.autograd.grad(loss, tensors)):
            accumulated.add_(grad)
    return dict(zip(names, total))


def snip_scores(model: nn.Module, losses: Losses, prunable: Prunable = prunable_weights) -> dict[str, torch.Tensor]:
    """SNIP connection sensitivity |g ⊙ θ| (higher = keep)."""
    weights = prunable(model)
    gradient = loss_gradient(model, losses, prunable)
    return {name: (gradient[name] * weight.detach()).abs().cpu() for name, weight in weights.items()}


def hessian_gradient_product(model: nn.Module, losses: Losses, prunable: Prunable = prunable_weights
                             ) -> dict[str, torch.Tensor]:
    """H g for the prunable weights: g the summed loss gradient, H the Hessian of the summed loss (two passes
    over the batches, as Wang et al.'s code does: first g, then d(g · dL/dθ)/dθ by double backward)."""
    gradient = loss_gradient(model, losses, prunable)
    scored, weights = _scoring_copy(model, prunable, None)
    scored.train()
    names, tensors = list(weights), list(weights.values())
    fixed = [gradient[name].to(tensor.device) for name, tensor in zip(names, tensors)]
    product = [torch.zeros_like(tensor) for tensor in tensors]
    for loss in losses(scored):
        grads = torch.autograd.grad(loss, tensors, create_graph=True)
        inner = sum((grad * g).sum() for grad, g in zip(grads, fixed))
        for accumulated, part in zip(product, torch.autograd.grad(inner, tensors)):
            accumulated.add_(part)
    return dict(zip(names, product))


def grasp_scores(model: nn.Module, losses: Losses, prunable: Prunable = prunable_weights) -> dict[str, torch.Tensor]:
    """GraSP θ ⊙ Hg (higher = keep: the paper removes the largest -θ ⊙ Hg)."""
    weights = prunable(model)
    product = hessian_gradient_product(model, losses, prunable)
    return {name: (product[name] * weight.detach()).cpu() for name, weight in weights.items()}


def synflow_scores(model: nn.Module, ones_input: torch.Tensor, prunable: Prunable = prunable_weights,
                   masks: Masks | None = None) -> dict[str, torch.Tensor]:
    """One round of SynFlow scores |θ ⊙ dR/dθ| of the (masked) network with |θ|, R = sum(f(1)) in float64."""
    scored, _ = _scoring_copy(model, prunable, masks)
    scored.double().eval()
    weights = prunable(scored)
    with torch.no_grad():
        for tensor in scored.state_dict().values():
            if tensor.is_floating_point():
                tensor.abs_()
    tensors = list(weights.values())
    output = scored(torch.ones_like(ones_input, dtype=torch.float64))
    grads = torch.autograd.grad(output.sum(), tensors)
    return {name: (grad * tensor).detach().abs().cpu() for (name, tensor), grad in zip(weights.items(), grads)}


def exponential_keep_schedule(total: dict[str, int] | int, keep: dict[str, int] | int, rounds: int) -> list:
    """Survivors after each of `rounds` rounds: round k keeps total * (keep / total) ** (k / rounds), rounded,
    never increasing, the last exactly `keep` (per layer when `keep` is a dict)."""
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


def synflow_mask(model: nn.Module, ones_input: torch.Tensor, keep: dict[str, int] | int, rounds: int = 100,
                 prunable: Prunable = prunable_weights) -> Masks:
    """SynFlow's iterative mask: `rounds` rounds of scoring the masked network and pruning to the exponential
    schedule's count; ends with exactly `keep` survivors (per layer for a dict, in total for an int)."""
    weights = prunable(model)
    sizes = {name: weight.numel() for name, weight in weights.items()}
    total = sizes if isinstance(keep, dict) else sum(sizes.values())
    masks: Masks = {name: torch.ones(weight.shape, dtype=torch.float32) for name, weight in weights.items()}
    for round_keep in exponential_keep_schedule(total, keep, rounds):
        scores = synflow_scores(model, ones_input, prunable, masks)
        masks = keep_top(scores, round_keep, eligible=masks)
    return masks


def shuffle_within_layers(masks: Masks, seed: int) -> Masks:
    """Each layer's mask with its entries permuted at random (same count per layer): Frankle et al. (2021)'s
    layer-wise shuffling control."""
    generator = torch.Generator().manual_seed(seed)
    return {name: mask.flatten()[torch.randperm(mask.numel(), generator=generator)].view_as(mask)
            for name, mask in masks.items()}
