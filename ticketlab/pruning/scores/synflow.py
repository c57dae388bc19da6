"""SynFlow (Tanaka et al. 2020): data-free. The network is linearized (every parameter and buffer replaced by its
absolute value, float64, evaluation mode), R = sum of its output on an all-ones input, score |θ ⊙ dR/dθ|; pruning
is iterated over `prune.synflow_rounds` rounds, round k keeping the fraction (keep / total) ** (k / rounds)
(`ticketlab.pruning.scores.score_mask` runs the rounds for every iterative score)."""

from __future__ import annotations

import torch
from torch import nn

from ticketlab.pruning.masks import Masks, prunable_weights
from ticketlab.pruning.scores.base import SCORES, Prunable, Score, ScoreInputs
from ticketlab.pruning.scores.gradients import scoring_copy


def synflow(model: nn.Module, inputs: ScoreInputs) -> dict[str, torch.Tensor]:
    """One round of SynFlow scores |θ ⊙ dR/dθ| of the (masked) network with |θ|, R = sum(f(1)) in float64."""
    scored, _ = scoring_copy(model, inputs.prunable, inputs.masks)
    scored.double().eval()
    weights = inputs.prunable(scored)
    with torch.no_grad():
        for tensor in scored.state_dict().values():
            if tensor.is_floating_point():
                tensor.abs_()
    tensors = list(weights.values())
    output = scored(torch.ones_like(inputs.ones_input, dtype=torch.float64))
    grads = torch.autograd.grad(output.sum(), tensors)
    return {name: (grad * tensor).detach().abs().cpu() for (name, tensor), grad in zip(weights.items(), grads)}


SCORES.register("synflow", Score(synflow, needs=("ones_input",), rounds_setting="synflow_rounds"))


def synflow_scores(model: nn.Module, ones_input: torch.Tensor, prunable: Prunable = prunable_weights,
                   masks: Masks | None = None) -> dict[str, torch.Tensor]:
    """One round of SynFlow scores of `model` with `masks` applied."""
    return synflow(model, ScoreInputs(prunable=prunable, ones_input=ones_input, masks=masks))


def synflow_mask(model: nn.Module, ones_input: torch.Tensor, keep: dict[str, int] | int, rounds: int = 100,
                 prunable: Prunable = prunable_weights) -> Masks:
    """SynFlow's iterative mask: `rounds` rounds of scoring the masked network and pruning to the exponential
    schedule's count; ends with exactly `keep` survivors (per layer for a dict, in total for an int)."""
    from ticketlab.pruning.scores import score_mask  # the package imports this module to register the score

    return score_mask("synflow", model, ScoreInputs(prunable=prunable, ones_input=ones_input), keep, rounds)
