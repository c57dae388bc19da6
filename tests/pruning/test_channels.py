"""Channel (structured) pruning: selection against an independent numpy computation, plans, config checks."""

import numpy as np
import pytest
import torch

from ticketlab.config import ExperimentConfig, PruneConfig
from ticketlab.errors import ConfigError
from ticketlab.lottery.context import keep_plan
from ticketlab.models import build_model
from ticketlab.pruning import prunable_weights
from ticketlab.pruning.channels import (
    channel_groups,
    channel_keep_plan,
    channel_masks,
    channel_scores,
    keep_channels,
)


def test_layerwise_and_global_selection_match_numpy():
    generator = torch.Generator().manual_seed(0)
    scores = {"a": torch.rand(10, generator=generator), "b": torch.rand(6, generator=generator)}
    eligible = {"a": torch.arange(10) % 3 != 0, "b": torch.ones(6, dtype=torch.bool)}
    kept = keep_channels(scores, {"a": 4, "b": 2}, eligible)
    for name, count in (("a", 4), ("b", 2)):
        values = np.where(eligible[name].numpy(), scores[name].numpy(), -np.inf)
        expected = np.zeros(len(values), bool)
        expected[np.argsort(-values, kind="stable")[:count]] = True
        assert kept[name].tolist() == expected.tolist()
    # global: the best 7 of all 16, with each group's best channel forced in
    low = {"a": torch.full((5,), 0.01) + torch.arange(5) * 1e-3, "b": torch.arange(1.0, 7.0)}
    kept = keep_channels(low, 4)
    assert kept["b"].tolist() == [False, False, False, True, True, True] and kept["a"].tolist() == [0, 0, 0, 0, 1]


def test_l1_and_bn_scores_and_masks_of_a_conv_net():
    model = build_model("vgg11", (1, 16, 16), 3, width=2)
    groups = channel_groups(model)
    state = model.state_dict()
    first = groups[0]
    l1 = channel_scores("l1", model, state, groups)[first.name]
    assert torch.allclose(l1, state[f"{first.producer}.weight"].abs().sum(dim=(1, 2, 3)))
    state[f"{first.norm}.weight"] = torch.tensor([0.5, -2.0])
    assert channel_scores("bn_scale", model, state, groups)[first.name].tolist() == [0.5, 2.0]
    with pytest.raises(ConfigError, match="needs a BatchNorm after features.0"):
        conv = build_model("conv2", (1, 16, 16), 3, width=2)
        channel_scores("bn_scale", conv, conv.state_dict(), channel_groups(conv))
    kept = {group.name: torch.ones(group.size, dtype=torch.bool) for group in groups}
    kept[first.name] = torch.tensor([True, False])
    masks = channel_masks(model, groups, kept, prunable_weights(model))
    assert masks[f"{first.producer}.weight"][1].sum() == 0 and masks[f"{first.producer}.weight"][0].all()
    assert masks[f"{first.norm}.weight"].tolist() == [1.0, 0.0] and masks[f"{first.norm}.bias"].tolist() == [1.0, 0.0]
    assert masks[f"{first.consumer}.weight"][:, 1].sum() == 0 and masks[f"{first.consumer}.weight"][:, 0].all()


def test_channel_plan_rounds_like_torch_prune_and_stops():
    groups = channel_groups(build_model("lenet300_100", (28, 28), 10))
    plan = channel_keep_plan(groups, {}, "layerwise", 0.2, 3, None)
    assert plan == [{"layers.1.weight": 300, "layers.3.weight": 100}, {"layers.1.weight": 240, "layers.3.weight": 80},
                    {"layers.1.weight": 192, "layers.3.weight": 64}, {"layers.1.weight": 154, "layers.3.weight": 51}]
    assert channel_keep_plan(groups, {}, "global", 0.5, 2, None) == [400, 200, 100]
    assert channel_keep_plan(groups, {}, "layerwise", 0.2, 5, 70.0)[-1] == {"layers.1.weight": 192,
                                                                               "layers.3.weight": 64}
    config = ExperimentConfig(prune=PruneConfig(unit="channel", levels=2, layer_rates=(("layers.3.weight", 0.5),)))
    model = build_model("lenet300_100", (28, 28), 10)
    assert keep_plan(config.replace(**{"model.name": "lenet300_100"}), model)[1] == {"layers.1.weight": 240,
                                                                                     "layers.3.weight": 50}


@pytest.mark.parametrize("changes,message", [
    ({"prune.unit": "neuron"}, "prune.unit"),
    ({"prune.unit": "channel", "prune.channel_score": "taylor"}, "prune.channel_score"),
])
def test_config_refuses_bad_channel_settings(changes, message):
    with pytest.raises(ConfigError, match=message):
        ExperimentConfig().replace(**changes)


def test_default_unit_keeps_old_run_hashes():
    assert ExperimentConfig().hash() == ExperimentConfig(prune=PruneConfig(unit="weight", channel_score="l1")).hash()
    assert ExperimentConfig().hash() != ExperimentConfig(prune=PruneConfig(unit="channel")).hash()
