"""The MLP actor-critic of K agents as one batched network over a `RowStack`'s [K, *shape] parameter stacks.

A Linear layer is `baddbmm(bias, x, weight^T)` over [K, N, in] inputs; the losses are computed per member ([K])
and their sum is differentiated (member k's loss reaches only its own slice, each with weight exactly 1).

Why baddbmm and not torch.func.vmap: a 32-agent PPO minibatch forward+backward (128 samples each, one thread)
took 12-13 ms this way and 18 ms under vmap(grad(functional_call)) (benchmarks/rl_population_speed.py
--compare-vmap), and vmap's batched kernels would not round as the agent's own do.

Exactness: with one thread on CPU each kernel rounds as the agent's own: baddbmm as nn.Linear's addmm for these
shapes, the one-output value head as addmv per member (a batched matmul sums its 64 products in another order),
the weight gradient as grad^T x (addmm's backward; bmm's default (x^T grad)^T does not round the same).
"""

from __future__ import annotations

import torch
from torch import nn

from ticketlab.tasks.rl.model import MLPActorCritic


class _StackedLinear(torch.autograd.Function):
    """x [K, N, in] -> x W_k^T + b_k, whose weight gradient is grad^T x (as nn.Linear's addmm backward computes
    it for a weight stored [out, in]), not bmm's default (x^T grad)^T, which sums in another order."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        grad_x = torch.bmm(grad, weight) if ctx.needs_input_grad[0] else None
        return grad_x, torch.bmm(grad.transpose(1, 2), x), grad.sum(1)


class StackedActorCritic:
    """The layers of an MLPActorCritic as (weight, bias) indices into the stack's parameter list."""

    def __init__(self, template: MLPActorCritic, names: list[str]) -> None:
        parameter_names = {id(parameter): name for name, parameter in template.named_parameters()}
        index_of = {name: index for index, name in enumerate(names)}

        def layers(modules):
            return [(index_of[parameter_names[id(m.weight)]], index_of[parameter_names[id(m.bias)]])
                    for m in modules if isinstance(m, nn.Linear)]

        self.policy_layers = layers(template.policy_trunk)
        self.value_layers = None if template.shared_trunk else layers(template.value_trunk)
        self.policy_head, self.value_head = layers([template.policy_head])[0], layers([template.value_head])[0]

    def forward(self, params: list[torch.Tensor], observations: torch.Tensor,
                differentiable: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits [K, N, actions], values [K, N]) of observations [K, N, features]; `differentiable` False for
        detached `params` (no autograd)."""
        linear = _linear if differentiable else _plain_linear
        features = observations
        for layer in self.policy_layers:
            features = torch.tanh(linear(params, layer, features))
        if self.value_layers is None:
            value_features = features
        else:
            value_features = observations
            for layer in self.value_layers:
                value_features = torch.tanh(linear(params, layer, value_features))
        logits = linear(params, self.policy_head, features)
        return logits, linear(params, self.value_head, value_features).squeeze(-1)

    def policy_logits(self, params: list[torch.Tensor], observations: torch.Tensor) -> torch.Tensor:
        """Logits [K, N, actions] of observations [K, N, features] (detached `params`)."""
        features = observations
        for layer in self.policy_layers:
            features = torch.tanh(_plain_linear(params, layer, features))
        return _plain_linear(params, self.policy_head, features)


def _linear(params, layer, x: torch.Tensor) -> torch.Tensor:
    weight, bias = params[layer[0]], params[layer[1]]
    if weight.shape[1] == 1:
        return _one_output_linear(weight, bias, x)
    return _StackedLinear.apply(x, weight, bias)


def _plain_linear(params, layer, x: torch.Tensor) -> torch.Tensor:
    weight, bias = params[layer[0]], params[layer[1]]
    if weight.shape[1] == 1:
        return _one_output_linear(weight, bias, x)
    return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))


def _one_output_linear(weight: torch.Tensor, bias: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Stacked one-output Linear layers (the value heads), [K, N, 1]. nn.Linear with one output runs a
    matrix-vector product (addmv), which sums in another order than a batched matmul would: so per member, and
    each value head rounds as the agent's own does (unbind, whose backward stacks the members' gradients once, not
    select, whose backward fills a zero stack per member)."""
    return torch.stack([torch.addmv(b, v, w) for b, v, w in
                        zip(bias.unbind(0), x.unbind(0), weight[:, 0].unbind(0))]).unsqueeze(2)
