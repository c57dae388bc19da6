"""Which models a classifier population can stack, how, and what one more member costs in memory.

The engine knows no model class: a model opts in through a small protocol its own class declares (never
inherited, since a subclass may override forward() and do anything with the same modules):
- `as_sequential()` -> the nn.Sequential that is the model's whole forward (ticketlab's MLP). A Flatten? +
  (Linear, ReLU)* + Linear sequence then trains with the hand-written batched backward.
- `vectorizable_forward = True`: the model's forward only composes its submodules, per example, so vmap over
  stacked weights computes each member's forward (ticketlab's ConvNet, VGG, ResNet and its BasicBlock). Every
  submodule must declare it too, or be an nn.Sequential or one of FUNCTIONAL_LEAVES.
Plain nn.Sequential qualifies by itself.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from ticketlab.config import TrainConfig
from ticketlab.training.population.classifier_nets import EVAL_CHUNK_FLOATS

# Layers whose batched (vmap) forms are per-member: a stack of convs becomes one grouped convolution, BatchNorm
# keeps per-member batch statistics and running averages. Dropout is left out: its random masks would differ.
FUNCTIONAL_LEAVES = (nn.Conv1d, nn.Conv2d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d, nn.ReLU, nn.MaxPool2d,
                     nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.Flatten, nn.Identity)


def _declares(module: nn.Module, name: str) -> bool:
    """Whether the module's own class (not a base class) declares `name`."""
    return name in vars(type(module))


def mlp_linears(model: nn.Module) -> list[nn.Linear] | None:
    """The Linear layers of a Flatten? + (Linear, ReLU)* + Linear network, in order; None for any other model.

    Only models that declare `as_sequential()` and plain nn.Sequential qualify: a custom forward() could do
    anything with the same modules, so it is not trusted.
    """
    if _declares(model, "as_sequential"):
        modules = list(model.as_sequential())
    elif type(model) is nn.Sequential:
        modules = list(model)
    else:
        return None
    if modules and type(modules[0]) is nn.Flatten:
        if (modules[0].start_dim, modules[0].end_dim) != (1, -1):
            return None
        modules = modules[1:]
    if len(modules) % 2 == 0:
        return None
    linears, activations = modules[0::2], modules[1::2]
    if not all(type(layer) is nn.Linear for layer in linears) or not all(type(act) is nn.ReLU for act in activations):
        return None
    if any(True for _ in model.buffers()):
        return None
    if any(parameter.dtype != torch.float32 for parameter in model.parameters()):
        return None
    return linears


def _vectorizable(module: nn.Module) -> bool:
    return _declares(module, "vectorizable_forward") and bool(type(module).vectorizable_forward)


def functional_vectorizable(model: nn.Module) -> bool:
    """Whether `model` can be trained in a population through torch.func (vmap of its own forward): models that
    declare `vectorizable_forward` (ticketlab's conv nets: ConvNet without dropout, VGG, ResNet) and nn.Sequential
    of FUNCTIONAL_LEAVES, all fp32."""
    if not (_vectorizable(model) or type(model) is nn.Sequential):
        return False
    if not all(_vectorizable(module) or type(module) in (nn.Sequential, *FUNCTIONAL_LEAVES)
               for module in model.modules()):
        return False
    return all(parameter.dtype == torch.float32 for parameter in model.parameters())


def can_vectorize(model: nn.Module) -> bool:
    """Whether `model` can be trained in a population: a Flatten + Linear/ReLU stack (hand-written batched
    backward), or a conv net `functional_vectorizable` accepts (torch.func)."""
    return mlp_linears(model) is not None or functional_vectorizable(model)


def prefers_population(model: nn.Module, device: torch.device) -> bool:
    """Whether stacking pays off by default: always for MLPs; for conv nets only on a GPU (on CPU a grouped
    convolution over K members ran at 0.57-0.69x the speed of K separate ones, benchmarks in the README)."""
    return mlp_linears(model) is not None or (functional_vectorizable(model) and device.type == "cuda")


def member_memory_bytes(model: nn.Module, config: TrainConfig, num_train: int,
                        input_shape: tuple[int, ...] | None = None) -> int:
    """Estimated bytes one more population member needs while training: weights, gradients, weights at the
    validation minimum, optimizer state, mask, activations and its data order. Evaluation is bounded apart.
    Conv nets need `input_shape` (one example's) to size their activations."""
    linears = mlp_linears(model)
    if linears is None and not functional_vectorizable(model):
        raise ValueError(f"{type(model).__name__} cannot be trained in a population")
    parameters = sum(parameter.numel() for parameter in model.parameters())
    optimizer_copies = {"adam": 2, "adamw": 2}.get(config.optimizer, 1 if config.momentum else 0)
    if linears is not None:
        widths = [linears[0].in_features] + [layer.out_features for layer in linears]
        activations = config.batch_size * (widths[0] + 2 * sum(widths[1:]))  # inputs, outputs and their gradients
    else:
        activations = config.batch_size * 3 * _leaf_output_floats(model, input_shape)  # outputs, saved, grads
    return 4 * parameters * (4 + optimizer_copies) + 4 * activations + 8 * num_train


def _leaf_output_floats(model: nn.Module, input_shape: tuple[int, ...] | None) -> int:
    """Floats the leaf modules output for one example of `input_shape` (a forward hook count on a CPU copy);
    the parameter count as a rough stand-in when the shape is unknown or does not fit."""
    if input_shape is None:
        return sum(parameter.numel() for parameter in model.parameters())
    probe = copy.deepcopy(model).cpu().eval()
    total = 0

    def count(_module, _inputs, output):
        nonlocal total
        total += output.numel()

    hooks = [module.register_forward_hook(count) for module in probe.modules() if not list(module.children())]
    try:
        with torch.no_grad():
            probe(torch.zeros((1, *input_shape)))
    except RuntimeError:
        total = sum(parameter.numel() for parameter in model.parameters())
    finally:
        for hook in hooks:
            hook.remove()
    return total


def population_eval_bytes() -> int:
    """Bytes evaluation needs on top of the members, whatever the population size (a few chunk buffers)."""
    return 4 * 4 * EVAL_CHUNK_FLOATS
