"""The exact-mask update every trainer shares: pruned weights start at zero, their gradients are zeroed before
clipping and every optimizer step (so momentum/Adam state and weight decay never move them), and the weights are
re-masked after the step."""

from __future__ import annotations

import torch
from torch import nn

from ticketlab.config import TrainConfig
from ticketlab.training.allocator import keep_freed_memory
from ticketlab.training.optim import build_optimizer, load_optimizer_tensors


def apply_masks(model: nn.Module, masks: dict[str, torch.Tensor]) -> None:
    """Zero the pruned entries of the model's weights in place."""
    parameters = dict(model.named_parameters())
    with torch.no_grad():
        for name, mask in masks.items():
            parameters[name].mul_(mask.to(parameters[name].device))


def check_schedule_answer(new_mask: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]) -> None:
    """ValueError unless a `MaskSchedule`'s answer names exactly the job's masked tensors (the engine and the
    stacked populations install it tensor by tensor)."""
    if set(new_mask) != set(masks):
        raise ValueError(f"a mask schedule returned tensors {sorted(new_mask)}, not the job's {sorted(masks)}")


@torch.no_grad()
def masked_optimizer_step(
    optimizer: torch.optim.Optimizer,
    masked_pairs: list[tuple[torch.Tensor, torch.Tensor]],
    parameters: list[torch.Tensor],
    clip_grad_norm: float | None = None,
) -> None:
    """One exact-mask update: zero the pruned gradients, clip the global gradient norm of `parameters` to
    `clip_grad_norm` (if set), step, and zero the pruned weights again (so no optimizer state moves them)."""
    if masked_pairs:
        masks = [mask for _, mask in masked_pairs]
        torch._foreach_mul_([parameter.grad for parameter, _ in masked_pairs], masks)
    if clip_grad_norm is not None:
        nn.utils.clip_grad_norm_(parameters, clip_grad_norm, foreach=True)
    optimizer.step()
    if masked_pairs:
        torch._foreach_mul_([parameter for parameter, _ in masked_pairs], masks)


def prepare_masked_training(model: nn.Module, masks: dict[str, torch.Tensor], config: TrainConfig,
                            optimizer_state: dict[str, torch.Tensor] | None, device) -> tuple:
    """The start every trainer shares: `model` on `device` in training mode with its pruned weights zeroed, and
    (optimizer from `config` holding `optimizer_state` if given, [(parameter, mask on device)], all parameters).
    Freed memory stays in the process from here on (`allocator.keep_freed_memory`)."""
    keep_freed_memory()
    model.to(device)
    model.train()
    apply_masks(model, masks)
    parameters = dict(model.named_parameters())
    masked_pairs = [(parameters[name], mask.to(device)) for name, mask in masks.items()]
    all_parameters = list(model.parameters())
    optimizer = build_optimizer(all_parameters, config)
    if optimizer_state:
        load_optimizer_tensors(optimizer, optimizer_state)
    return optimizer, masked_pairs, all_parameters
