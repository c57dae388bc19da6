"""Model registry: build a network by name, initialized from an explicit seed."""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from ticketlab.errors import ConfigError
from ticketlab.models.conv import ConvNet, SeededDropout, set_noise_seed
from ticketlab.models.imagenet_resnet import IMAGENET_RESNETS, ImageNetResNet
from ticketlab.models.mlp import MLP, mlp_input_size
from ticketlab.models.pretrained import load_torchvision_weights
from ticketlab.models.resnet import ResNet
from ticketlab.models.vgg import VGG

MODEL_HIDDEN_WIDTHS = {"lenet300_100": (300, 100)}
# name -> (family, depth as in the name, first-stage width of the published network)
CONV_MODELS = {
    "conv2": ("conv", 2, 64), "conv4": ("conv", 4, 64), "conv6": ("conv", 6, 64),
    "vgg11": ("vgg", 11, 64), "vgg13": ("vgg", 13, 64), "vgg16": ("vgg", 16, 64), "vgg19": ("vgg", 19, 64),
    "resnet20": ("resnet", 20, 16), "resnet32": ("resnet", 32, 16), "resnet56": ("resnet", 56, 16),
}
# ImageNet ResNets in torchvision's layout (name -> depth); model.width scales them (64 published)
IMAGENET_MODELS = {f"resnet{depth}": depth for depth in IMAGENET_RESNETS}


def build_model(
    name: str,
    input_shape: tuple[int, ...],
    num_classes: int,
    *,
    hidden: tuple[int, ...] = (100, 100),
    width: int | None = None,
    depth: int | None = None,
    dropout: float = 0.0,
) -> nn.Module:
    """An uninitialized-by-us network (torch default init); call `initialize` to seed its weights.

    Conv nets: `width` is the first stage's channels (None: the published network's), `depth` the number in the
    name (conv: 2 per pooling block, vgg: 11/13/16/19, resnet: 6n+2; None: the name's). `dropout` is conv2/4/6 only.
    """
    if name == "mlp":
        return MLP(mlp_input_size(input_shape), tuple(hidden), num_classes)
    if name in MODEL_HIDDEN_WIDTHS:
        return MLP(mlp_input_size(input_shape), MODEL_HIDDEN_WIDTHS[name], num_classes)
    if name in CONV_MODELS:
        family, default_depth, default_width = CONV_MODELS[name]
        depth, width = depth or default_depth, width or default_width
        if dropout and family != "conv":
            raise ConfigError(f"model.dropout is supported by conv2/conv4/conv6, not {name}")
        if family == "conv":
            if depth % 2:
                raise ConfigError(f"conv net depth {depth} must be even (two convs per pooling block)")
            return ConvNet(input_shape, num_classes, blocks=depth // 2, width=width, dropout=dropout)
        if family == "vgg":
            return VGG(input_shape, num_classes, depth=depth, width=width)
        return ResNet(input_shape, num_classes, depth=depth, width=width)
    if name in IMAGENET_MODELS:
        if depth is not None:
            raise ConfigError(f"model.depth does not apply to {name} (its depth is in the name); leave it unset")
        if len(input_shape) != 3:
            raise ConfigError(f"{name} needs [C, H, W] images, got inputs of shape {tuple(input_shape)}")
        return ImageNetResNet(IMAGENET_MODELS[name], num_classes, width=width or 64, in_channels=input_shape[0])
    allowed = ["mlp", *MODEL_HIDDEN_WIDTHS, *CONV_MODELS, *IMAGENET_MODELS]
    raise ConfigError(f"unknown model.name {name!r}; allowed: {', '.join(allowed)}")


def initialize(model: nn.Module, scheme: str, seed: int) -> nn.Module:
    """Re-draw every parameter of `model` in place from `seed` (no global RNG is touched); returns it.

    'glorot_normal' / 'glorot_uniform' / 'kaiming_normal' set Linear and Conv weights and zero their biases;
    other modules (and every module under 'torch_default') use their own reset_parameters(): BatchNorm gets
    weight 1, bias 0 and fresh running statistics.
    """
    generator = torch.Generator().manual_seed(seed)
    with _seeded_global_rng(seed):  # for reset_parameters(), which only knows the global RNG
        for module in model.modules():
            weight = getattr(module, "weight", None)
            is_weight_layer = isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d))
            if scheme != "torch_default" and is_weight_layer:
                with torch.no_grad():
                    if scheme == "glorot_normal":
                        nn.init.xavier_normal_(weight, generator=generator)
                    elif scheme == "glorot_uniform":
                        nn.init.xavier_uniform_(weight, generator=generator)
                    elif scheme == "kaiming_normal":
                        nn.init.kaiming_normal_(weight, nonlinearity="relu", generator=generator)
                    else:
                        raise ConfigError(f"unknown model.init {scheme!r}")
                    if module.bias is not None:
                        module.bias.zero_()
            elif hasattr(module, "reset_parameters") and not list(module.children()):
                module.reset_parameters()
    return model


@contextlib.contextmanager
def _seeded_global_rng(seed: int):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


__all__ = ["CONV_MODELS", "IMAGENET_MODELS", "ImageNetResNet", "SeededDropout", "build_model", "initialize",
           "load_torchvision_weights", "set_noise_seed"]
