"""The stacked-population engine: the weights, masks and optimizer state of K same-architecture members as K-row
stacks, updated by torch's own fused optimizer kernels with each member's row a tensor of its own.

Every task's population trainer (classifiers, PPO agents) keeps one `RowStack` and supplies only its forward and
backward: it fills gradients of the stacks' shape, and the stack masks them, steps every member at its own
learning rate and optimizer step count, and shrinks to the members still training (`keep`).

Why rows as tensors of their own: each parameter is one contiguous [K, *shape] tensor; the kernel gets every
member's row of every parameter as a separate tensor (one call per learning rate, usually one call in all), so it
walks each row as it walks that parameter of the job trained alone: a member's rounding never depends on the other
members or on how they are grouped (tested). (Rows padded into one segment per parameter, an earlier layout, made
the weight-gradient matmuls write a strided output, 30-50% slower for small layers.)

Masked weights stay exactly 0: their gradients are zeroed before every step and, with `zero_pruned_state`, their
optimizer state is zeroed once at the start, so Adam/SGD (with L2 or decoupled weight decay) compute an update of
exactly 0 for them; pruned entries of optimizer state never influence surviving entries (every optimizer here is
elementwise), so zeroing them changes no surviving weight. A trainer whose reference re-masks after each step
instead (PPO's `masked_optimizer_step`) calls `mask_parameters()` and keeps the pruned state as it is.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.optim.adam import adam as adam_update
from torch.optim.sgd import sgd as sgd_update

from ticketlab.config import TrainConfig
from ticketlab.training.masked_step import check_schedule_answer
from ticketlab.training.optim import build_optimizer, learning_rate_at, load_optimizer_tensors
from ticketlab.training.population.member import MemberProgress


class RowStack:
    """Stacked parameters, buffers, masks and optimizer state of `members` (row k holds `members[k]`).

    `template`: one member's model (parameter names and order: the optimizer's indices). `states`: each member's
    {name: tensor} holding every parameter (and the buffers to stack, e.g. BatchNorm statistics).
    `requires_grad`: the parameter stacks are autograd leaves (the trainer differentiates through them and hands
    their .grad to `step`); else the stack holds gradient buffers the trainer fills (`grads`).
    """

    def __init__(self, template: nn.Module, members: Sequence[MemberProgress], states: list[dict[str, torch.Tensor]],
                 config: TrainConfig, device, *, zero_pruned_state: bool, requires_grad: bool = False) -> None:
        self.config, self.device = config, device
        self.zero_pruned_state, self.requires_grad = zero_pruned_state, requires_grad
        self.members = list(members)
        self.names = [name for name, _ in template.named_parameters()]  # model.parameters() order
        shapes = {name: value.shape for name, value in states[0].items()}
        if any({name: value.shape for name, value in state.items()} != shapes for state in states):
            raise ValueError("population members must share one architecture (the same parameter names and shapes)")
        parameter_names = set(self.names)
        self.buffer_names = [name for name in shapes if name not in parameter_names]
        self.buffers = [torch.stack([state[name].detach() for state in states]).to(device)
                        for name in self.buffer_names]
        self.params = [torch.stack([state[name].detach() for state in states]).to(device) for name in self.names]
        self.masks = []
        for index, name in enumerate(self.names):
            if any(name in progress.member.masks for progress in self.members):
                ones = torch.ones_like(self.params[index][0], dtype=torch.bool)
                stacked = torch.stack([progress.member.masks[name].to(device) != 0
                                       if name in progress.member.masks else ones for progress in self.members])
                self.masks.append(stacked.to(self.params[index].dtype))  # float: multiplies 2x faster than bool
            else:
                self.masks.append(None)
        probe = build_optimizer([nn.Parameter(torch.zeros(1, device=device))], config)
        self.hyper = dict(probe.param_groups[0])
        self.kind = config.optimizer
        self.state_keys = {"adam": ("exp_avg", "exp_avg_sq"), "adamw": ("exp_avg", "exp_avg_sq")}.get(
            self.kind, ("momentum_buffer",) if self.hyper.get("momentum", 0) else ()
        )
        self.state = {key: [torch.zeros_like(param) for param in self.params] for key in self.state_keys}
        for row, progress in enumerate(self.members):
            self._load_optimizer_row(row, progress.member.optimizer_state)
        self._refresh_rows()
        for index, mask in enumerate(self.masks):
            if mask is not None:
                self.params[index].mul_(mask)
                if zero_pruned_state:
                    for key in self.state_keys:
                        self.state[key][index].mul_(mask)
        if requires_grad:
            for param in self.params:
                param.requires_grad_()

    def _refresh_rows(self) -> None:
        """The per-member views the optimizer takes, after the stacks were built or shrunk."""
        count = len(self.members)
        self.grads = None if self.requires_grad else [torch.zeros_like(param) for param in self.params]
        self.masked = [index for index, mask in enumerate(self.masks) if mask is not None and not bool(mask.all())]

        def rows(tensors):  # every member's row of every parameter, member by member
            return [tensor[row] for row in range(count) for tensor in tensors]

        self.param_rows = rows([param.detach() for param in self.params])
        self.grad_rows = None if self.grads is None else rows(self.grads)
        self.state_rows = {key: rows(tensors) for key, tensors in self.state.items()}
        self.step_values = torch.zeros(len(self.param_rows), dtype=torch.float32, device=self.device)
        self.step_rows = list(self.step_values.unbind(0))

    def _load_optimizer_row(self, row: int, flat: dict[str, torch.Tensor] | None) -> None:
        """Put one member's optimizer state (`optimizer_tensors` format; None or {}: fresh) into row `row`."""
        progress = self.members[row]
        progress.optimizer_steps, progress.has_momentum = 0, False
        for key in self.state_keys:
            for index in range(len(self.names)):
                self.state[key][index][row].zero_()
        if not flat:
            return
        for key in self.state_keys:
            for index in range(len(self.names)):
                value = flat.get(f"{index}.{key}")
                if value is not None:
                    self.state[key][index][row].copy_(value)
                    progress.has_momentum = progress.has_momentum or key == "momentum_buffer"
        step = flat.get("0.step")
        if step is not None:
            progress.optimizer_steps = int(step.item())

    def keep(self, rows: list[int]) -> None:
        """Drop every member whose row is not in `rows` (finished members leave the population)."""
        select = torch.tensor(rows, dtype=torch.long, device=self.device)
        self.members = [self.members[row] for row in rows]
        self.params = [param.detach().index_select(0, select) for param in self.params]
        if self.requires_grad:
            for param in self.params:
                param.requires_grad_()
        self.masks = [None if mask is None else mask.index_select(0, select) for mask in self.masks]
        self.state = {key: [tensor.index_select(0, select) for tensor in tensors]
                      for key, tensors in self.state.items()}
        self.buffers = [buffer.index_select(0, select) for buffer in self.buffers]
        self._refresh_rows()

    # --- one member's view, in the single-job trainer's formats ---

    def member_state(self, row: int) -> dict[str, torch.Tensor]:
        """Row `row` as the member model's state_dict (views into the stacks)."""
        state = {name: param.detach()[row] for name, param in zip(self.names, self.params)}
        state.update({name: buffer[row] for name, buffer in zip(self.buffer_names, self.buffers)})
        return state

    def member_optimizer_tensors(self, row: int) -> dict[str, torch.Tensor]:
        """The member's optimizer state as `optimizer_tensors` of a torch optimizer would give it (views)."""
        progress = self.members[row]
        flat: dict[str, torch.Tensor] = {}
        if self.kind in ("adam", "adamw"):
            if progress.optimizer_steps == 0:
                return flat
            for index in range(len(self.names)):
                flat[f"{index}.step"] = torch.tensor(float(progress.optimizer_steps), device=self.device)
                flat[f"{index}.exp_avg"] = self.state["exp_avg"][index][row]
                flat[f"{index}.exp_avg_sq"] = self.state["exp_avg_sq"][index][row]
        elif progress.has_momentum:
            for index in range(len(self.names)):
                flat[f"{index}.momentum_buffer"] = self.state["momentum_buffer"][index][row]
        return flat

    def write_back(self, row: int) -> nn.Module:
        """The member's own model (on the stack's device), holding row `row`'s weights and buffers."""
        model = self.members[row].member.model.to(self.device)
        targets = dict(model.named_parameters()) | dict(model.named_buffers())
        with torch.no_grad():  # as load_state_dict copies, but a trunk shared by two heads is written once
            for name, value in self.member_state(row).items():
                targets[name].copy_(value)
        return model

    def model_and_optimizer(self, row: int) -> tuple[nn.Module, torch.optim.Optimizer]:
        """The member's model and a torch optimizer holding its state, as the single-job trainer holds them."""
        model = self.write_back(row)
        optimizer = build_optimizer(list(model.parameters()), self.config)
        flat = self.member_optimizer_tensors(row)
        if flat:
            load_optimizer_tensors(optimizer, {name: value.clone() for name, value in flat.items()})
        return model, optimizer

    @torch.no_grad()
    def restore(self, row: int, model_state: dict[str, torch.Tensor], optimizer_state: dict | None) -> None:
        """Load row `row` from a checkpoint's model state_dict and flat optimizer state."""
        for index, name in enumerate(self.names):
            self.params[index][row].copy_(model_state[name])
        for buffer, name in zip(self.buffers, self.buffer_names):
            buffer[row].copy_(model_state[name])
        self._load_optimizer_row(row, optimizer_state)
        if self.zero_pruned_state:
            for index, mask in enumerate(self.masks):
                if mask is not None:
                    for key in self.state_keys:
                        self.state[key][index][row].mul_(mask[row])

    @torch.no_grad()
    def install_mask(self, row: int, new_mask: dict[str, torch.Tensor]) -> None:
        """Make `new_mask` (a `MaskSchedule`'s answer, the member's mask names) row `row`'s mask in force, as the
        single-job engine installs one: the pruned weights and their optimizer state become 0, so a weight that
        a later mask keeps again starts from 0; the member's `masks` then hold it."""
        masks = self.members[row].member.masks
        check_schedule_answer(new_mask, masks)
        for index, name in enumerate(self.names):
            if name not in new_mask:
                continue
            in_force = self.masks[index][row]
            in_force.copy_(new_mask[name].to(self.device) != 0)
            self.params[index].detach()[row].mul_(in_force)
            for key in self.state_keys:
                self.state[key][index][row].mul_(in_force)
            masks[name] = in_force.to(masks[name].device, masks[name].dtype, copy=True)
        self.masked = [index for index, mask in enumerate(self.masks) if mask is not None and not bool(mask.all())]

    def member_mask(self, row: int) -> dict[str, torch.Tensor]:
        """Row `row`'s mask in force, under the member's mask names (bool)."""
        names = self.members[row].member.masks
        return {name: mask[row] != 0 for name, mask in zip(self.names, self.masks) if name in names}

    # --- the masked, per-member optimizer step ---

    def learning_rates(self, iterations_per_epoch: int) -> list[float]:
        """Each member's learning rate for its next update (its own step and total)."""
        rates: dict[tuple[int, int], float] = {}
        for progress in self.members:
            key = (progress.step, progress.total)
            if key not in rates:
                rates[key] = learning_rate_at(progress.step, self.config, progress.total, iterations_per_epoch)
        return [rates[(progress.step, progress.total)] for progress in self.members]

    @torch.no_grad()
    def mask_gradients(self, grads: list[torch.Tensor] | None = None) -> None:
        """Zero the gradients of pruned weights (`grads`: the stacks' gradients; None: the stack's own buffers)."""
        grads = self.grads if grads is None else grads
        if self.masked:
            torch._foreach_mul_([grads[index] for index in self.masked], [self.masks[index] for index in self.masked])

    @torch.no_grad()
    def mask_parameters(self) -> None:
        """Zero the pruned weights again (for trainers whose reference re-masks after every step)."""
        for index in self.masked:
            self.params[index].detach().mul_(self.masks[index])

    @torch.no_grad()
    def step(self, learning_rates: list[float], grads: list[torch.Tensor] | None = None) -> None:
        """One optimizer update of every member at its own learning rate and step count (gradients already
        masked); `grads`: the stacks' gradients, None: the stack's own buffers. Counts the members' steps."""
        if grads is None:
            grad_rows = self.grad_rows
        else:  # member by member, as `param_rows` (unbind: one call per parameter)
            per_parameter = [grad.unbind(0) for grad in grads]
            grad_rows = [views[row] for row in range(len(self.members)) for views in per_parameter]
        for (has_momentum, lr), runs in self._groups(learning_rates).items():
            self._step_runs(runs, has_momentum, lr, grad_rows)
        momentum = "momentum_buffer" in self.state_keys
        for progress in self.members:
            progress.optimizer_steps += 1
            progress.has_momentum = momentum

    def _groups(self, learning_rates: list[float]) -> dict[tuple[bool, float], list[tuple[int, int, int]]]:
        """Runs (start, stop, optimizer step count) of adjacent members that step alike, by (momentum, lr)."""
        keys = [(progress.has_momentum, lr, progress.optimizer_steps)
                for progress, lr in zip(self.members, learning_rates)]
        # Adjacent members with the same momentum state and learning rate go to the fused kernel in one call (one
        # call per learning rate), each member's row of each parameter a tensor of its own with its own step
        # count: the kernel walks a row as it walks that parameter of the job alone, so a member's rounding never
        # depends on its neighbours (whose step counts differ after a kill between two members' checkpoint
        # writes) or on how the members are grouped.
        groups: dict[tuple[bool, float], list[tuple[int, int, int]]] = {}
        start = 0
        for row in range(1, len(keys) + 1):
            if row == len(keys) or keys[row] != keys[start]:
                has_momentum, lr, optimizer_steps = keys[start]
                groups.setdefault((has_momentum, lr), []).append((start, row, optimizer_steps))
                start = row
        return groups

    def _step_runs(self, runs: list[tuple[int, int, int]], has_momentum: bool, lr: float, grad_rows) -> None:
        """One fused optimizer call over the members start:stop of every run (start, stop, optimizer step count)."""
        hyper = self.hyper
        width = len(self.params)

        def rows_of(tensor_rows):
            if len(runs) == 1:
                return tensor_rows[runs[0][0] * width : runs[0][1] * width]
            return [tensor for start, stop, _ in runs for tensor in tensor_rows[start * width : stop * width]]

        params, grads = rows_of(self.param_rows), rows_of(grad_rows)
        decoupled = hyper.get("decoupled_weight_decay", self.kind == "adamw")
        if self.kind in ("adam", "adamw") and hyper["fused"] and not hyper["amsgrad"]:
            # the fused kernel itself, as torch.optim.adam's fused path calls it after adding 1 to every step
            # count: here the counts are set to the step taken (one fill per run instead of one add per tensor,
            # which cost ~0.5 ms a step for 32 small members)
            for start, stop, count in runs:
                self.step_values[start * width : stop * width].fill_(float(count + 1))
            fused_step = torch._fused_adamw_ if decoupled else torch._fused_adam_
            fused_step(
                params, grads, rows_of(self.state_rows["exp_avg"]), rows_of(self.state_rows["exp_avg_sq"]), [],
                rows_of(self.step_rows), amsgrad=False, lr=lr, beta1=hyper["betas"][0], beta2=hyper["betas"][1],
                weight_decay=hyper["weight_decay"], eps=hyper["eps"], maximize=hyper["maximize"],
                grad_scale=None, found_inf=None,
            )
            return
        if self.kind in ("adam", "adamw"):
            for start, stop, count in runs:  # adam increments these to the step it takes
                self.step_values[start * width : stop * width].fill_(float(count))
            adam_update(
                params, grads, rows_of(self.state_rows["exp_avg"]), rows_of(self.state_rows["exp_avg_sq"]),
                [], rows_of(self.step_rows),
                foreach=hyper["foreach"], fused=hyper["fused"],
                decoupled_weight_decay=decoupled, amsgrad=hyper["amsgrad"], beta1=hyper["betas"][0],
                beta2=hyper["betas"][1], lr=lr, weight_decay=hyper["weight_decay"], eps=hyper["eps"],
                maximize=hyper["maximize"],
            )
            return
        targets = rows_of(self.state_rows["momentum_buffer"]) if "momentum_buffer" in self.state_rows else []
        buffers = targets if has_momentum else [None] * len(params)
        sgd_update(
            params, grads, buffers, foreach=hyper["foreach"], fused=hyper["fused"],
            weight_decay=hyper["weight_decay"], momentum=hyper["momentum"], lr=lr,
            dampening=hyper["dampening"], nesterov=hyper["nesterov"], maximize=hyper["maximize"],
        )
        if targets and not has_momentum:  # the first step created fresh buffers; keep them in the stacks
            torch._foreach_copy_(targets, buffers)
