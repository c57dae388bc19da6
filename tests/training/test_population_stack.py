"""The shared population engine (`RowStack`) against torch's own optimizers, and the stackable-model protocol."""

import pytest
import torch
from torch import nn

from ticketlab.config import TrainConfig
from ticketlab.models.conv import ConvNet
from ticketlab.models.mlp import MLP
from ticketlab.training.optim import build_optimizer, learning_rate_at, optimizer_tensors
from ticketlab.training.population import (
    MemberProgress,
    PopulationMember,
    RowStack,
    can_vectorize,
    functional_vectorizable,
    mlp_linears,
)

CONFIGS = [
    TrainConfig(optimizer="adam", lr=3e-3, weight_decay=1e-3, schedule="cosine", steps="8it"),
    TrainConfig(optimizer="adamw", lr=3e-3, weight_decay=0.1, steps="8it"),
    TrainConfig(optimizer="sgd", lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4, schedule="cosine",
                steps="8it"),
]


def _model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 3))


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.optimizer)
def test_each_row_steps_as_a_torch_optimizer_alone_before_and_after_keep(one_thread, config):
    """Three members (one masked, one with a shorter schedule, so another learning rate) step through the stack;
    each is compared bitwise with its own model and torch optimizer; then the middle member leaves (keep)."""
    models = [_model(seed) for seed in range(3)]
    masks = [{}, {"0.weight": (torch.rand(7, 5, generator=torch.Generator().manual_seed(1)) > 0.5).float()}, {}]
    totals = [8, 8, 5]
    progress = [MemberProgress(PopulationMember(model, mask, data_seed=k), k, total)
                for k, (model, mask, total) in enumerate(zip(models, masks, totals))]
    stack = RowStack(models[0], progress, [m.state_dict() for m in models], config, torch.device("cpu"),
                     zero_pruned_state=True)
    alone = [_model(seed) for seed in range(3)]
    with torch.no_grad():
        for model, mask in zip(alone, masks):
            for name, value in mask.items():
                dict(model.named_parameters())[name].mul_(value)
    optimizers = [build_optimizer(list(model.parameters()), config) for model in alone]
    generator = torch.Generator().manual_seed(2)
    rows = [0, 1, 2]
    for step in range(5):
        if step == 3:
            rows = [0, 2]
            stack.keep([0, 2])
        for row, member in enumerate(rows):
            grads = [torch.randn(param.shape, generator=generator) for param in alone[member].parameters()]
            for target, grad in zip(stack.grads, grads):
                target[row].copy_(grad)
            for (name, param), grad in zip(alone[member].named_parameters(), grads):
                param.grad = grad * masks[member][name] if name in masks[member] else grad.clone()
            for group in optimizers[member].param_groups:
                group["lr"] = learning_rate_at(step, config, totals[member], 1)
            optimizers[member].step()
        stack.mask_gradients()
        stack.step(stack.learning_rates(1))
        for member in stack.members:
            member.step += 1
        for row, member in enumerate(rows):
            for name, value in stack.member_state(row).items():
                assert torch.equal(value, alone[member].state_dict()[name]), (config.optimizer, step, member, name)
            reference = optimizer_tensors(optimizers[member])
            ours = stack.member_optimizer_tensors(row)
            assert ours.keys() == reference.keys()
            for key in reference:
                assert torch.equal(ours[key], reference[key]), (config.optimizer, step, member, key)
    assert [member.index for member in stack.members] == [0, 2]


class OwnForwardMLP(MLP):
    """Inherits as_sequential() but may compute anything: not trusted."""

    def forward(self, inputs):
        return super().forward(inputs) * 2


class OwnForwardConvNet(ConvNet):
    def forward(self, inputs):
        return super().forward(inputs) * 2


def test_models_stack_by_the_protocol_their_own_class_declares():
    mlp = MLP(12, (8,), 3)
    assert mlp_linears(mlp) == [mlp.layers[1], mlp.layers[3]] and can_vectorize(mlp)
    assert mlp_linears(OwnForwardMLP(12, (8,), 3)) is None and not can_vectorize(OwnForwardMLP(12, (8,), 3))
    assert functional_vectorizable(ConvNet((1, 8, 8), 3, blocks=1, width=4))
    assert not functional_vectorizable(OwnForwardConvNet((1, 8, 8), 3, blocks=1, width=4))
    assert not functional_vectorizable(ConvNet((1, 8, 8), 3, blocks=1, width=4, dropout=0.5))

    class Declared(nn.Module):
        vectorizable_forward = True

        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))

        def forward(self, inputs):
            return self.body(inputs)

    assert functional_vectorizable(Declared()) and not mlp_linears(Declared())
