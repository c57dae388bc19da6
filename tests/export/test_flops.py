"""FLOP and parameter counts against a hand count on tiny networks."""

import torch
from torch import nn

from ticketlab.export.cost import model_cost
from ticketlab.export.flops import LayerCost, ModelCost


def _tiny_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1),  # 1x4x4 -> 2x4x4: 18 weights applied at 16 positions
        nn.ReLU(),
        nn.Conv2d(2, 4, 3, stride=2, padding=1, bias=False),  # -> 4x2x2: 72 weights at 4 positions
        nn.BatchNorm2d(4),
        nn.Flatten(),
        nn.Linear(16, 3),  # 48 weights, once
    )


def test_flops_match_a_hand_count():
    net = _tiny_net()
    with torch.no_grad():
        net[0].weight[0, 0, 0, :] = 0  # 3 zeros
        net[2].weight[1] = 0  # 18 zeros
        net[5].weight[:, :5] = 0  # 15 zeros
    cost = model_cost(net, torch.zeros(1, 1, 4, 4))
    by_name = {layer.name: layer for layer in cost.layers}
    assert [layer.name for layer in cost.layers] == ["0.weight", "2.weight", "5.weight"]
    assert (by_name["0.weight"].positions, by_name["2.weight"].positions, by_name["5.weight"].positions) == (16, 4, 1)
    assert by_name["0.weight"].dense_flops == 2 * 18 * 16 == 576
    assert by_name["0.weight"].effective_flops == 2 * 15 * 16
    assert by_name["2.weight"].dense_flops == 2 * 72 * 4
    assert by_name["2.weight"].effective_flops == 2 * 54 * 4
    assert by_name["5.weight"].effective_flops == 2 * 33
    assert cost.dense_flops == 576 + 576 + 96
    assert cost.effective_flops == 480 + 432 + 66
    # biases (2 + 3) and the BatchNorm's scale and shift (4 + 4) are the other parameters, all nonzero but BN's
    # shift (zero-initialized)
    assert cost.other_parameters == 13 and cost.other_nonzero == 9
    assert cost.parameters == 18 + 72 + 48 + 13
    assert cost.nonzero_parameters == 15 + 54 + 33 + 9
    assert abs(cost.remaining_flops_percent - 100 * 978 / 1248) < 1e-9


def test_arithmetic_is_torch_free_and_counts_a_sequence_position_per_application():
    layer = LayerCost("embed.weight", "embedding", 100, 50, 0)
    assert layer.dense_flops == 0
    total = ModelCost((LayerCost("a", "linear", 10, 4, 3),), other_parameters=2, other_nonzero=1)
    assert total.totals() == {"parameters": 12, "nonzero_parameters": 5, "dense_flops": 60, "effective_flops": 24,
                              "remaining_flops_percent": 40.0}
    sequence = model_cost(nn.Linear(4, 2), torch.zeros(1, 7, 4))  # applied at 7 positions
    assert sequence.layers[0].positions == 7 and sequence.dense_flops == 2 * 8 * 7
