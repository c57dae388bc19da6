"""Scores from the loss gradient of the untrained network, over a few seeded batches (pruning at initialization).

- SNIP (Lee et al. 2019): |g ⊙ θ|, g the loss gradient summed over the scoring batches.
- GraSP (Wang et al. 2020): θ ⊙ Hg. The paper removes the weights with the largest -θ ⊙ Hg (pruning them reduces
  gradient flow least); keeping the highest θ ⊙ Hg is the same rule. Hg is a Hessian-gradient product by double
  backward, g the gradient over the scoring batches. Wang et al.'s code (github.com/alecwangcq/GraSP,
  pruner/GraSP.py) computes both g and Hg on the cross-entropy of the logits divided by a temperature T = 200,
  which the paper does not mention; the losses carry it (`prune.grasp_temperature`, passed to the task's
  `score_losses` by `ticketlab.lottery.at_init`), so these functions stay free of it.

Losses come from a callable `losses(model)` yielding scalar losses on seeded batches: the task supplies it (see
`ticketlab.tasks.base.Task.score_losses`; which batches, with which seeds and in which order, the lottery jobs
score on: `ticketlab.lottery.at_init.at_init_mask`), so these functions know nothing of data or training. Each
scores a copy of the model: the caller's weights, BatchNorm statistics and gradients are left as they were.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from ticketlab.pruning.masks import Masks, prunable_weights
from ticketlab.pruning.scores.base import SCORES, Losses, Prunable, Score, ScoreInputs


def scoring_copy(model: nn.Module, prunable: Prunable, masks: Masks | None) -> tuple[nn.Module, dict]:
    """A deep copy of `model` with `masks` applied, and its prunable weights (scores never touch the caller's)."""
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
    scored, weights = scoring_copy(model, prunable, masks)
    scored.train()
    names, tensors = list(weights), list(weights.values())
    total = [torch.zeros_like(tensor) for tensor in tensors]
    for loss in losses(scored):
        for accumulated, grad in zip(total, torch.autograd.grad(loss, tensors)):
            accumulated.add_(grad)
    return dict(zip(names, total))


def hessian_gradient_product(model: nn.Module, losses: Losses, prunable: Prunable = prunable_weights
                             ) -> dict[str, torch.Tensor]:
    """H g for the prunable weights: g the summed loss gradient, H the Hessian of the summed loss (two passes
    over the batches, as Wang et al.'s code does: first g, then d(g · dL/dθ)/dθ by double backward)."""
    gradient = loss_gradient(model, losses, prunable)
    scored, weights = scoring_copy(model, prunable, None)
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


def snip(model: nn.Module, inputs: ScoreInputs) -> dict[str, torch.Tensor]:
    """SNIP connection sensitivity |g ⊙ θ| (higher = keep)."""
    weights = inputs.prunable(model)
    gradient = loss_gradient(model, inputs.losses, inputs.prunable)
    return {name: (gradient[name] * weight.detach()).abs().cpu() for name, weight in weights.items()}


def grasp(model: nn.Module, inputs: ScoreInputs) -> dict[str, torch.Tensor]:
    """GraSP θ ⊙ Hg (higher = keep: the paper removes the largest -θ ⊙ Hg)."""
    weights = inputs.prunable(model)
    product = hessian_gradient_product(model, inputs.losses, inputs.prunable)
    return {name: (product[name] * weight.detach()).cpu() for name, weight in weights.items()}


SCORES.register("snip", Score(snip, needs=("losses",)))
SCORES.register("grasp", Score(grasp, needs=("losses",), temperature_setting="grasp_temperature"))


def snip_scores(model: nn.Module, losses: Losses, prunable: Prunable = prunable_weights) -> dict[str, torch.Tensor]:
    """SNIP's scores of `model`'s prunable weights on the losses `losses(model)` yields."""
    return snip(model, ScoreInputs(prunable=prunable, losses=losses))


def grasp_scores(model: nn.Module, losses: Losses, prunable: Prunable = prunable_weights) -> dict[str, torch.Tensor]:
    """GraSP's scores of `model`'s prunable weights on the losses `losses(model)` yields (for Wang et al.'s GraSP,
    losses of the logits divided by their temperature, 200)."""
    return grasp(model, ScoreInputs(prunable=prunable, losses=losses))
