"""Optimizers and learning-rate schedules. Schedules are pure functions of the step, so resuming needs no state."""

from __future__ import annotations

import math

import torch

from ticketlab.config import TrainConfig, parse_step
from ticketlab.errors import ConfigError


def build_optimizer(params: list[torch.nn.Parameter], config: TrainConfig) -> torch.optim.Optimizer:
    """SGD (momentum, Nesterov, L2 weight decay), Adam (L2) or AdamW (decoupled decay); fused kernels where supported."""
    fused = all(param.device.type in ("cpu", "cuda") for param in params) or None
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov,
            weight_decay=config.weight_decay, fused=fused,
        )
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, betas=(0.9, config.beta2), eps=config.eps,
                                weight_decay=config.weight_decay, fused=fused)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, betas=(0.9, config.beta2), eps=config.eps,
                                 weight_decay=config.weight_decay, fused=fused)
    raise ConfigError(f"unknown train.optimizer {config.optimizer!r}; allowed: sgd, adam, adamw")


def learning_rate_at(step: int, config: TrainConfig, total_steps: int, iterations_per_epoch: int) -> float:
    """The learning rate used for the update that takes the model from `step` to `step + 1`."""
    warmup = parse_step(config.warmup, iterations_per_epoch)
    if config.schedule == "constant":
        rate = config.lr
    elif config.schedule == "step":
        milestones = [parse_step(text, iterations_per_epoch) for text in config.milestones]
        rate = config.lr * config.gamma ** sum(step >= milestone for milestone in milestones)
    elif config.schedule == "inverse_sqrt":  # Vaswani et al. (2017): peak at the warmup's end, then 1/sqrt(step)
        rate = config.lr * math.sqrt(max(warmup, 1) / max(step + 1, warmup, 1))
    elif config.schedule == "linear":  # linear decay to 0 at the end (PPO's learning-rate annealing)
        rate = config.lr * max(0.0, 1.0 - step / max(total_steps, 1))
    elif config.schedule == "cosine":
        rate = config.lr * 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / max(total_steps, 1)))
    else:
        raise ConfigError(f"unknown train.schedule {config.schedule!r}; allowed: constant, step, cosine, "
                          "inverse_sqrt, linear")
    if warmup > 0 and step < warmup:
        rate *= (step + 1) / warmup
    return rate


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """Flatten optimizer state to 'param_index.key' -> tensor, for safetensors."""
    flat = {}
    for param_index, state in optimizer.state_dict()["state"].items():
        for key, value in state.items():
            if torch.is_tensor(value):
                flat[f"{param_index}.{key}"] = value
    return flat


def load_optimizer_tensors(optimizer: torch.optim.Optimizer, flat: dict[str, torch.Tensor]) -> None:
    """Inverse of optimizer_tensors: restore the state into a freshly built optimizer."""
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, tensor in flat.items():
        param_index, key = name.split(".", 1)
        state.setdefault(int(param_index), {})[key] = tensor
    current = optimizer.state_dict()
    optimizer.load_state_dict({"state": state, "param_groups": current["param_groups"]})
