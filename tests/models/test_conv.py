"""Conv-2/4/6, VGG and CIFAR ResNet: shapes, prunable selection, parameter counts by hand, BN init, seeded dropout."""

import pytest
import torch
from torch import nn

from ticketlab.config import ExperimentConfig, ModelConfig
from ticketlab.errors import ConfigError
from ticketlab.models import build_model, initialize, set_noise_seed
from ticketlab.pruning import output_layer_name, prunable_weights


def conv_params(c_in, c_out, k=3, bias=True):
    return c_in * c_out * k * k + (c_out if bias else 0)


def linear_params(n_in, n_out):
    return n_in * n_out + n_out


def count(model):
    return sum(parameter.numel() for parameter in model.parameters())


def test_conv2_parameter_count_matches_hand_computation():
    model = build_model("conv2", (3, 32, 32), 10)
    expected = (conv_params(3, 64) + conv_params(64, 64) + linear_params(16 * 16 * 64, 256)
                + linear_params(256, 256) + linear_params(256, 10))
    assert count(model) == expected == 4_301_642  # the paper's "4.3M"
    weights = prunable_weights(model)
    assert [tuple(w.shape) for w in weights.values()] == [(64, 3, 3, 3), (64, 64, 3, 3), (256, 16384), (256, 256), (10, 256)]
    assert output_layer_name(model) == "classifier.5.weight"


def test_conv_nets_take_mnist_tensors_without_channel_axis():
    model = build_model("conv6", (28, 28), 10, width=4)
    assert model(torch.zeros(5, 28, 28)).shape == (5, 10)
    # 28 -> 14 -> 7 -> 3 after three pools; 16 channels in the last block; FC width 4 * width
    assert prunable_weights(model)["classifier.1.weight"].shape == (16, 16 * 3 * 3)


def resnet_params(depth, width, classes=10, in_channels=3):
    n = (depth - 2) // 6
    total = conv_params(in_channels, width, bias=False) + 2 * width
    channels = width
    for stage in range(3):
        out = width * 2**stage
        for index in range(n):
            total += conv_params(channels, out, bias=False) + conv_params(out, out, bias=False) + 4 * out
            if channels != out:
                total += conv_params(channels, out, k=1, bias=False) + 2 * out
            channels = out
    return total + linear_params(channels, classes)


@pytest.mark.parametrize("depth, width", [(20, 16), (32, 8), (56, 4), (20, 64)])
def test_resnet_parameter_count(depth, width):
    model = build_model(f"resnet{depth}" if depth in (20, 32, 56) else "resnet20", (3, 32, 32), 10, width=width)
    assert count(model) == resnet_params(depth, width)


def test_resnet20_is_about_027m_and_depth_is_settable():
    assert count(build_model("resnet20", (3, 32, 32), 10)) == 272_474
    deeper = build_model("resnet20", (3, 32, 32), 10, depth=44, width=4)
    assert count(deeper) == resnet_params(44, 4)
    with pytest.raises(ConfigError, match="6n\\+2"):
        build_model("resnet20", (3, 32, 32), 10, depth=21)


def test_prunable_weights_exclude_batchnorm_and_biases():
    for name in ("resnet20", "vgg11"):
        model = build_model(name, (3, 32, 32), 100, width=4)
        weights = prunable_weights(model)
        modules = dict(model.named_modules())
        assert all(isinstance(modules[key.rsplit(".", 1)[0]], (nn.Conv2d, nn.Linear)) for key in weights)
        batchnorm = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
        assert batchnorm and not any(any(p is w for w in weights.values()) for m in batchnorm for p in m.parameters())
        assert all(key.endswith(".weight") for key in weights)
        assert output_layer_name(model) == "fc.weight"
        assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 100)


def test_vgg19_shapes_and_count():
    model = build_model("vgg19", (3, 32, 32), 10)
    plan = [64, 64, 128, 128, 256, 256, 256, 256] + [512] * 8
    channels, expected = 3, 0
    for out in plan:
        expected += conv_params(channels, out, bias=False) + 2 * out
        channels = out
    assert count(model) == expected + linear_params(512, 10)
    assert len(prunable_weights(model)) == 17


def test_initialize_resets_batchnorm_and_is_seeded():
    model = build_model("resnet20", (3, 32, 32), 10, width=4)
    model(torch.randn(8, 3, 32, 32))  # training-mode forward moves the running statistics
    with torch.no_grad():
        model.bn.weight.fill_(3.0)
    initialize(model, "kaiming_normal", seed=7)
    assert torch.all(model.bn.weight == 1) and torch.all(model.bn.bias == 0)
    assert torch.all(model.bn.running_mean == 0) and torch.all(model.bn.running_var == 1)
    again = initialize(build_model("resnet20", (3, 32, 32), 10, width=4), "kaiming_normal", seed=7)
    for (name, a), b in zip(model.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), name
    std = model.conv.weight.std().item()  # kaiming normal: sqrt(2 / fan_in), fan_in = 3 * 9
    assert abs(std - (2 / 27) ** 0.5) < 0.1


def test_seeded_dropout_is_a_function_of_the_step_seed():
    model = build_model("conv2", (1, 8, 8), 10, width=2, dropout=0.5)
    initialize(model, "glorot_normal", 0)
    inputs = torch.randn(4, 1, 8, 8)
    assert set_noise_seed(model, 123)
    first = model(inputs)
    torch.rand(10)  # the global RNG does not matter
    second = model(inputs)
    set_noise_seed(model, 124)
    third = model(inputs)
    assert torch.equal(first, second) and not torch.equal(first, third)
    model.eval()
    assert torch.equal(model(inputs), model(inputs))


def test_config_fields_default_out_of_the_hash_and_validate():
    assert ExperimentConfig().hash() == ExperimentConfig(model=ModelConfig(width=None, dropout=0.0)).hash()
    assert ExperimentConfig().hash() != ExperimentConfig(model=ModelConfig(width=8)).hash()
    with pytest.raises(ConfigError, match="dropout"):
        ExperimentConfig().replace(**{"model.dropout": 1.5})
    with pytest.raises(ConfigError, match="conv2/conv4/conv6"):
        build_model("resnet20", (3, 32, 32), 10, dropout=0.1)
    with pytest.raises(ConfigError, match="images"):
        build_model("conv2", (40,), 10)


@pytest.mark.parametrize("name", ["conv2_cifar10", "conv4_cifar10", "conv6_cifar10", "conv2_fashion_mnist",
                                  "conv2_fashion_mnist_small",
                                  "vgg19_cifar10", "resnet20_cifar10", "resnet20_tiny"])
def test_presets_name_real_layers(name):
    from ticketlab.lottery.context import layer_rates
    from ticketlab.presets import preset

    config = preset(name)
    shape = (28, 28) if "mnist" in name else (3, 32, 32)
    model = build_model(config.model.name, shape, 10, width=config.model.width)
    rates = layer_rates(config, model)  # raises ConfigError on a layer name the model lacks
    if config.prune.layer_rates:  # conv2/4/6: conv 10%/15%, FC 20%, output 10%
        conv = [rate for key, rate in rates.items() if key.startswith("features")]
        assert len(conv) == int(config.model.name[-1]) and len(set(conv)) == 1
        assert rates[output_layer_name(model)] == 0.1
