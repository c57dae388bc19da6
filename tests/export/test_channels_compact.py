"""Channel groups, compact networks and sparse kernels on the built-in architectures (no training)."""

import pytest
import torch
from torch import nn

from ticketlab.errors import ConfigError
from ticketlab.pruning.compact import channel_counts, compact_model, removable_channels, shrink_to
from ticketlab.export.cost import model_cost
from ticketlab.export.sparse import sparse_model
from ticketlab.models import build_model, initialize
from ticketlab.pruning import prunable_weights
from ticketlab.pruning.channels import channel_groups, channel_masks, keep_channels, random_channel_scores

TOLERANCE = {"rtol": 1e-4, "atol": 1e-5}


def _trained_looking(name, **kwargs):
    """A built-in network with seeded weights and non-trivial BatchNorm statistics and shifts."""
    model = initialize(build_model(name, (1, 16, 16), 5, **kwargs), "kaiming_normal", 3)
    generator = torch.Generator().manual_seed(1)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.copy_(torch.randn(module.num_features, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
            module.bias.data.copy_(torch.randn(module.num_features, generator=generator) * 0.1)
    return model.eval()


def _channel_pruned(model, fraction=0.5, seed=0):
    groups = channel_groups(model)
    keep = {group.name: max(1, int(group.size * fraction)) for group in groups}
    kept = keep_channels(random_channel_scores(groups, seed), keep)
    masks = channel_masks(model, groups, kept, prunable_weights(model))
    parameters = dict(model.named_parameters())
    with torch.no_grad():
        for name, mask in masks.items():
            parameters[name].mul_(mask)
    return model, groups, kept, masks


def test_groups_of_the_built_in_networks():
    resnet = build_model("resnet20", (1, 16, 16), 5, width=4)
    groups = channel_groups(resnet)
    assert len(groups) == 9  # one inner group per basic block; the residual stream is never a group
    assert groups[0].producer == "blocks.0.conv1" and groups[0].norm == "blocks.0.bn1"
    assert groups[0].consumer == "blocks.0.conv2" and groups[0].repeat == 1
    conv = build_model("conv2", (1, 16, 16), 5, width=4)
    names = [(group.producer, group.consumer, group.repeat, group.norm) for group in channel_groups(conv)]
    # features.2 (4 channels) feeds the Linear after the 2x2 pool and flatten: 8 * 8 features per channel
    assert names == [("features.0", "features.2", 1, None), ("features.2", "classifier.1", 64, None),
                     ("classifier.1", "classifier.3", 1, None), ("classifier.3", "classifier.5", 1, None)]
    vgg = channel_groups(build_model("vgg11", (1, 16, 16), 5, width=2))
    assert all(group.norm is not None for group in vgg) and vgg[-1].consumer == "fc"
    with pytest.raises(ConfigError, match="prune.unit 'channel' supports"):
        channel_groups(nn.LSTM(3, 4))


@pytest.mark.parametrize("name,kwargs", [("resnet20", {"width": 4}), ("conv2", {"width": 4}),
                                         ("vgg11", {"width": 2}), ("lenet300_100", {})])
def test_compact_network_computes_the_masked_networks_outputs(name, kwargs):
    model, groups, kept, _ = _channel_pruned(_trained_looking(name, **kwargs))
    inputs = torch.randn(6, 1, 16, 16, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = model(inputs)
        smaller = compact_model(model)
        assert torch.allclose(smaller(inputs), expected, **TOLERANCE)
    counts = channel_counts(smaller)
    assert counts == {group.name: int(kept[group.name].sum()) for group in groups}
    # the compact network holds exactly the masked network's nonzero parameters (here: no zero survives inside
    # a kept channel), and its dense FLOPs are the masked network's effective FLOPs
    masked_cost, compact_cost = model_cost(model, inputs[:1]), model_cost(smaller, inputs[:1])
    assert compact_cost.dense_flops == masked_cost.effective_flops
    assert compact_cost.parameters < masked_cost.parameters
    # the architecture is rebuilt from the counts alone, and loads the compact weights
    rebuilt = shrink_to(_trained_looking(name, **kwargs), counts)
    rebuilt.load_state_dict(smaller.state_dict())
    with torch.no_grad():
        assert torch.equal(rebuilt.eval()(inputs), smaller(inputs))


def test_unread_and_dead_channels_are_removable_and_live_ones_are_not():
    model = _trained_looking("conv2", width=4)
    groups = channel_groups(model)
    with torch.no_grad():
        model.features[2].weight[:, 1] = 0  # channel 1 of features.0 is never read
        model.features[0].weight[3] = 0
        model.features[0].bias[3] = 0.5  # channel 3 has no filter but a bias: a constant, not dead
        model.classifier[3].weight[5] = 0
        model.classifier[3].bias[5] = 0  # neuron 5 of classifier.3 outputs exactly zero
    removable = removable_channels(model, groups)
    assert removable["features.0.weight"].tolist() == [False, True, False, False]
    assert removable["classifier.3.weight"].nonzero().flatten().tolist() == [5]
    inputs = torch.randn(3, 1, 16, 16)
    with torch.no_grad():
        assert torch.allclose(compact_model(model)(inputs), model(inputs), **TOLERANCE)


@pytest.mark.parametrize("layout", ["csr", "bsr"])
def test_sparse_kernels_reproduce_the_masked_network(layout):
    model = _trained_looking("conv2", width=4)
    generator = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for weight in prunable_weights(model).values():
            weight.mul_(torch.rand(weight.shape, generator=generator) < 0.3)
    inputs = torch.randn(5, 1, 16, 16, generator=generator)
    blocksize = 1 if layout == "bsr" else 4  # 1x1 blocks divide every matrix, including the 9-column first conv
    with torch.no_grad():
        sparse = sparse_model(model, layout, blocksize)
        assert torch.allclose(sparse(inputs), model(inputs), **TOLERANCE)
        assert all(module.weight.layout == (torch.sparse_csr if layout == "csr" else torch.sparse_bsr)
                   for module in sparse.modules() if hasattr(module, "weight") and module.weight is not None
                   and type(module).__name__.startswith("Sparse"))
    strided = _trained_looking("resnet20", width=4)  # stride-2 convs, 1x1 shortcuts, BatchNorm
    with torch.no_grad():
        assert torch.allclose(sparse_model(strided)(inputs), strided(inputs), **TOLERANCE)
