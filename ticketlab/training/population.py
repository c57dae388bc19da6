"""Train a population of same-architecture networks together: K jobs stacked along a leading dimension.

Each member keeps everything `train_model` gives a job — its own initial weights, masks, data order, optimizer
state, start/total steps (so its place in the learning-rate schedule), early-stop record, metrics.jsonl and
checkpoint — while the arithmetic of all members runs as one batched step.

Two forward/backward paths share the stacking, optimizer, evaluation bookkeeping and checkpoints:
- MLPs (Flatten + Linear/ReLU stacks) use hand-stacked tensors and a hand-written backward, below.
- Conv nets (ticketlab's ConvNet without dropout, VGG, ResNet) run their own forward under
  vmap(grad(functional_call)): K convolutions become one grouped convolution and BatchNorm keeps per-member
  batch statistics; the running statistics are stacked buffers, checkpointed per member.

Why hand-stacked tensors and a hand-written backward for MLPs (not autograd through bmm, not torch.func.vmap):
- The network is Flatten + (Linear, ReLU)* + Linear, whose backward is three lines per layer. Writing it
  lets every weight gradient land, contiguous and in the weight's own [K, out, in] layout, in a buffer
  allocated once (`bmm(..., out=)`), with no autograd graph. For 16 LeNet-300-100 members (one thread, CPU
  time, benchmarks/population_speed.py) a forward+backward took 19 ms this way, 23 ms with autograd through
  bmm and 22 ms with vmap(grad(functional_call)); the matmuls themselves run near the matmul peak.
- The optimizer is torch's own functional Adam/AdamW/SGD (the fused kernels `build_optimizer` selects), so the
  update arithmetic is the reference's. Each parameter is one contiguous [K, *shape] tensor; the kernel gets
  every member's row of every parameter as a tensor of its own (one call per learning rate, usually one call in
  all), so it walks each row as it walks that parameter of the job trained alone: a member's rounding never
  depends on the other members or on how they are grouped (tested). (Rows padded into one segment per
  parameter, an earlier layout, made the weight-gradient matmuls write a strided output, 30-50% slower for
  small layers.)

Exactness against `train_model` (the reference): with one thread on CPU, a member's batched matmuls round
exactly as the single-matrix ones do, and so does the fused optimizer on every element outside a vector
tail; when every tensor size is a multiple of the SIMD width the population is bitwise identical to the job
trained alone (weights and TrainResult; the logged per-step training loss is summed in another order). With
more threads or odd sizes, rounding differs at 1e-8 per step, which training can amplify (see
tests/training/test_population.py for the tolerance). Masked weights stay exactly 0: their gradients are
zeroed before every step and their optimizer state is zeroed once at the start, so Adam/SGD (with L2 or
decoupled weight decay) compute an update of exactly 0 for them; pruned entries of optimizer state never
influence surviving entries (every optimizer here is elementwise), so zeroing them changes no surviving weight.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn
from torch.func import functional_call, grad_and_value, vmap
from torch.nn import functional as F
from torch.optim.adam import adam as adam_update
from torch.optim.sgd import sgd as sgd_update

from ticketlab.config import TrainConfig, parse_step
from ticketlab.data.splits import DataSplits
from ticketlab.models.mlp import MLP
from ticketlab.seeds import derive_seed
from ticketlab.store import append_jsonl
from ticketlab.training.allocator import keep_freed_memory
from ticketlab.training.loop import (
    CHECKPOINT_FILE,
    EVAL_BATCH,
    METRICS_FILE,
    EarlyStopRecord,
    TrainingInterrupted,
    TrainResult,
    epoch_order,
    eval_batch_size,
    iterations_per_epoch,
    read_checkpoint_or_set_aside,
    reset_metrics,
    write_checkpoint,
)
from ticketlab.training.optim import build_optimizer, learning_rate_at, load_optimizer_tensors

# Evaluation runs in chunks whose widest activation holds at most this many floats for the whole population
# (8 MiB: it stays in cache between layers; 32 MiB chunks ran at ~80% of the matmul peak, 8 MiB at ~90% for 16
# LeNet-300-100 members).
EVAL_CHUNK_FLOATS = 1 << 21


@dataclass
class PopulationMember:
    """One job of a population: the arguments `train_model` takes for it.

    `model` holds the starting weights and, like train_model's model, ends holding the trained weights (on the
    data's device). `on_snapshot(step, model, optimizer)` receives a model and a torch optimizer holding the
    member's state at that step, as train_model would pass them.
    """

    model: nn.Module
    masks: dict[str, torch.Tensor]
    data_seed: int
    start_step: int = 0
    total_steps: int | None = None
    optimizer_state: dict[str, torch.Tensor] | None = None
    job_dir: Path | None = None
    snapshot_steps: tuple[int, ...] = ()
    on_snapshot: Callable[[int, nn.Module, torch.optim.Optimizer], None] | None = None


def mlp_linears(model: nn.Module) -> list[nn.Linear] | None:
    """The Linear layers of a Flatten? + (Linear, ReLU)* + Linear network, in order; None for any other model.

    Only ticketlab's MLP and plain nn.Sequential qualify: a custom forward() could do anything with the same
    modules, so it is not trusted.
    """
    if type(model) is MLP:
        modules = list(model.layers)
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


# Layers whose batched (vmap) forms are per-member: a stack of convs becomes one grouped convolution, BatchNorm
# keeps per-member batch statistics and running averages. Dropout is left out: its random masks would differ.
FUNCTIONAL_LEAVES = (nn.Conv1d, nn.Conv2d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d, nn.ReLU, nn.MaxPool2d,
                     nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.Flatten, nn.Identity)


def functional_vectorizable(model: nn.Module) -> bool:
    """Whether `model` can be trained in a population through torch.func (vmap of its own forward): ticketlab's
    conv nets (ConvNet without dropout, VGG, ResNet) and nn.Sequential of FUNCTIONAL_LEAVES, all fp32."""
    from ticketlab.models.conv import ConvNet
    from ticketlab.models.resnet import BasicBlock, ResNet
    from ticketlab.models.vgg import VGG

    if type(model) not in (ConvNet, VGG, ResNet, nn.Sequential):
        return False
    trusted = (ConvNet, VGG, ResNet, BasicBlock, nn.Sequential, *FUNCTIONAL_LEAVES)
    if not all(type(module) in trusted for module in model.modules()):
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


# --- the population ---------------------------------------------------------------------------------


class _MemberProgress:
    """Bookkeeping of one member that lives outside the stacked tensors."""

    def __init__(self, index: int, member: PopulationMember, total: int) -> None:
        self.index = index  # position in the caller's list
        self.member = member
        self.step = member.start_step
        self.total = total
        self.optimizer_steps = 0  # Adam's step count (bias correction); not the training step after a rewind
        self.has_momentum = False  # SGD: whether the momentum buffer holds history (else the first step sets it)
        self.record = EarlyStopRecord()
        self.steps_since_eval = 0
        self.reported_step = member.start_step
        self.last_checkpoint_time = time.monotonic()
        self.order_epoch = -1
        self.test_pending = False  # a validation minimum whose test accuracy is not evaluated yet
        job_dir = member.job_dir
        self.metrics_path = job_dir / METRICS_FILE if job_dir else None
        self.checkpoint_path = job_dir / CHECKPOINT_FILE if job_dir else None


class _Population:
    """Stacked weights, gradients, optimizer state and masks of the members still training."""

    def __init__(self, members: Sequence[PopulationMember], data: DataSplits, config: TrainConfig,
                 keep_best: bool = False) -> None:
        template = members[0].model
        self.keep_best = keep_best
        linears = mlp_linears(template)
        # MLPs run a hand-written batched backward; conv nets run their own forward under vmap(grad)
        self.functional = linears is None
        if self.functional and not functional_vectorizable(template):
            raise ValueError(f"{type(template).__name__} cannot be trained in a population; use train_model")
        self.config = config
        self.device = data.x_train.device
        names = {id(parameter): name for name, parameter in template.named_parameters()}
        self.names = list(names.values())  # model.parameters() order: the optimizer's parameter indices
        index_of = {name: index for index, name in enumerate(self.names)}
        self.layers = [
            (index_of[names[id(layer.weight)]], index_of[names[id(layer.bias)]] if layer.bias is not None else None)
            for layer in linears or ()
        ]
        if self.functional:
            self.train_base = copy.deepcopy(template).to("meta").train()  # structure only: weights come stacked
            self.eval_base = copy.deepcopy(template).to("meta").eval()
            self.grad_fn = vmap(grad_and_value(self._member_loss))
        self.flattens = any(type(module) is nn.Flatten for module in template.modules())
        probe = build_optimizer([nn.Parameter(torch.zeros(1, device=self.device))], config)
        self.hyper = dict(probe.param_groups[0])
        self.kind = config.optimizer
        self.state_keys = {"adam": ("exp_avg", "exp_avg_sq"), "adamw": ("exp_avg", "exp_avg_sq")}.get(
            self.kind, ("momentum_buffer",) if self.hyper.get("momentum", 0) else ()
        )
        self.num_train = len(data.x_train)
        self.per_epoch = iterations_per_epoch(self.num_train, config.batch_size)
        default_total = parse_step(config.steps, self.per_epoch)
        # Members that share a start and an optimizer history stay in lock step; keeping them adjacent lets the
        # optimizer treat each such run as one slice.
        order = sorted(
            range(len(members)),
            key=lambda i: (members[i].start_step, members[i].optimizer_state is not None, members[i].total_steps or 0),
        )
        self.progress = [
            _MemberProgress(i, members[i], default_total if members[i].total_steps is None else members[i].total_steps)
            for i in order
        ]
        self._stack_members()

    # --- building and shrinking the stacks ---

    def _stack_members(self) -> None:
        device, count = self.device, len(self.progress)
        states = [{name: value.detach() for name, value in p.member.model.state_dict().items()} for p in self.progress]
        shapes = {name: value.shape for name, value in states[0].items()}
        if any({name: value.shape for name, value in state.items()} != shapes for state in states):
            raise ValueError("population members must share one architecture (the same parameter names and shapes)")
        self.buffer_names = [name for name in shapes if name not in set(self.names)]
        self.buffers = [torch.stack([state[name] for state in states]).to(device) for name in self.buffer_names]
        self.params = [torch.stack([state[name] for state in states]).to(device) for name in self.names]
        masks = []
        for index, name in enumerate(self.names):
            if any(name in p.member.masks for p in self.progress):
                ones = torch.ones_like(self.params[index][0], dtype=torch.bool)
                stacked = torch.stack([p.member.masks[name].to(device) != 0 if name in p.member.masks else ones
                                       for p in self.progress])
                masks.append(stacked.to(self.params[index].dtype))  # float: multiplies 2x faster than bool
            else:
                masks.append(None)
        self.masks = masks
        self.state = {key: [torch.zeros_like(param) for param in self.params] for key in self.state_keys}
        for row, progress in enumerate(self.progress):
            self._load_optimizer_row(row, progress, progress.member.optimizer_state)
        self._refresh_after_change()
        for index, mask in enumerate(self.masks):
            if mask is not None:
                self.params[index].mul_(mask)
                for key in self.state_keys:
                    self.state[key][index].mul_(mask)
        self.running_loss = torch.zeros(count, device=device)
        self.orders = torch.empty((count, self.num_train), dtype=torch.long, device=device)
        # weights at each member's validation minimum, whose test accuracy is evaluated only if it is reported
        self.best_params = [torch.empty_like(param) for param in self.params] if self.keep_best else None
        self.best_buffers = [torch.empty_like(buffer) for buffer in self.buffers] if self.keep_best else None

    def _refresh_after_change(self) -> None:
        self.grads = [torch.zeros_like(param) for param in self.params]
        self.masked = [index for index, mask in enumerate(self.masks) if mask is not None and not bool(mask.all())]
        # every member's row of every parameter, member by member: the optimizer's tensor lists
        def rows(tensors):
            return [tensor[row] for row in range(len(self.progress)) for tensor in tensors]

        self.param_rows, self.grad_rows = rows(self.params), rows(self.grads)
        self.state_rows = {key: rows(tensors) for key, tensors in self.state.items()}
        self.step_values = torch.zeros(len(self.param_rows), dtype=torch.float32, device=self.device)
        self.step_rows = list(self.step_values.unbind(0))

    def _load_optimizer_row(self, row: int, progress: _MemberProgress, flat: dict[str, torch.Tensor] | None) -> None:
        """Put one member's optimizer state (optimizer_tensors format) into row `row` of the stacks."""
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
        self.progress = [self.progress[row] for row in rows]
        self.params = [param.index_select(0, select) for param in self.params]
        self.masks = [None if mask is None else mask.index_select(0, select) for mask in self.masks]
        self.state = {key: [tensor.index_select(0, select) for tensor in tensors]
                      for key, tensors in self.state.items()}
        self.buffers = [buffer.index_select(0, select) for buffer in self.buffers]
        self.running_loss = self.running_loss.index_select(0, select)
        self.orders = self.orders.index_select(0, select)
        if self.best_params is not None:
            self.best_params = [param.index_select(0, select) for param in self.best_params]
            self.best_buffers = [buffer.index_select(0, select) for buffer in self.best_buffers]
        self._refresh_after_change()

    # --- one member's view, in the reference's formats ---

    def member_state(self, row: int) -> dict[str, torch.Tensor]:
        state = {name: param[row] for name, param in zip(self.names, self.params)}
        state.update({name: buffer[row] for name, buffer in zip(self.buffer_names, self.buffers)})
        return state

    def member_optimizer_tensors(self, row: int) -> dict[str, torch.Tensor]:
        """The member's optimizer state as `optimizer_tensors` of a torch optimizer would give it."""
        progress = self.progress[row]
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

    def member_model_and_optimizer(self, row: int) -> tuple[nn.Module, torch.optim.Optimizer]:
        model = self.progress[row].member.model.to(self.device)
        model.load_state_dict({name: value.clone() for name, value in self.member_state(row).items()})
        optimizer = build_optimizer(list(model.parameters()), self.config)
        flat = self.member_optimizer_tensors(row)
        if flat:
            load_optimizer_tensors(optimizer, {name: value.clone() for name, value in flat.items()})
        return model, optimizer

    def restore_checkpoint(self, row: int, checkpoint) -> None:
        """Load member `row` from `checkpoint`, a `read_checkpoint` result."""
        progress = self.progress[row]
        model_state, optimizer_state, step, record = checkpoint
        for index, name in enumerate(self.names):
            self.params[index][row].copy_(model_state[name])
        for buffer, name in zip(self.buffers, self.buffer_names):
            buffer[row].copy_(model_state[name])
        self._load_optimizer_row(row, progress, optimizer_state)
        for index, mask in enumerate(self.masks):
            if mask is not None:
                for key in self.state_keys:
                    self.state[key][index][row].mul_(mask[row])
        progress.step, progress.record, progress.reported_step = step, record, step

    def remember_best(self, rows: list[int]) -> None:
        select = torch.tensor(rows, dtype=torch.long, device=self.device)
        for best, param in zip(self.best_params + self.best_buffers, self.params + self.buffers):
            best.index_copy_(0, select, param.index_select(0, select))
        for row in rows:
            self.progress[row].test_pending = True

    def resolve_pending_tests(self, rows: list[int], data: DataSplits) -> None:
        """Evaluate the test accuracy of the validation minima still pending among `rows`."""
        pending = [row for row in rows if self.progress[row].test_pending]
        if not pending:
            return
        _, accuracies = self.evaluate(pending, data.x_test, data.y_test, with_loss=False, params=self.best_params,
                                      buffers=self.best_buffers)
        for row, accuracy in zip(pending, accuracies):
            self.progress[row].record.best_test_accuracy = accuracy
            self.progress[row].test_pending = False

    def save_checkpoint(self, row: int) -> None:
        progress = self.progress[row]
        write_checkpoint(progress.checkpoint_path, self.member_state(row), self.member_optimizer_tensors(row),
                         progress.step, progress.record)

    # --- training ---

    def batch(self, data: DataSplits, augment) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs [K, B, features] and labels [K, B]: member k's batch at its own step, from its own data order."""
        batch_size = self.config.batch_size
        positions = []
        for row, progress in enumerate(self.progress):
            epoch, position = divmod(progress.step, self.per_epoch)
            if progress.order_epoch != epoch:
                self.orders[row] = epoch_order(self.num_train, progress.member.data_seed, epoch).to(self.device)
                progress.order_epoch = epoch
            positions.append(position)
        if all(position == positions[0] for position in positions):
            start = positions[0] * batch_size
            indices = self.orders[:, start : start + batch_size]
        else:
            indices = torch.stack([self.orders[row, p * batch_size : (p + 1) * batch_size]
                                   for row, p in enumerate(positions)])
        count = len(self.progress)
        labels = data.y_train.index_select(0, indices.reshape(-1)).view(count, batch_size)
        if augment is None:
            inputs = self.flat_inputs(data.x_train).index_select(0, indices.reshape(-1))
            inputs = inputs.view(count, batch_size, *inputs.shape[1:])
        else:
            inputs = torch.stack([
                self.flat_inputs(augment(data.x_train[indices[row]],
                                         derive_seed(progress.member.data_seed, "augment", progress.step)))
                for row, progress in enumerate(self.progress)
            ])
        return inputs, labels

    def flat_inputs(self, inputs: torch.Tensor) -> torch.Tensor:
        """The inputs as the first layer takes them: flattened for an MLP, as they are for a conv net."""
        if self.functional:
            return inputs
        if self.flattens:
            return inputs.reshape(len(inputs), -1)
        if inputs.dim() != 2:
            raise ValueError("a population model without nn.Flatten needs inputs of shape [N, features]")
        return inputs

    def loss_and_gradients(self, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of each member on its batch ([K]); fills self.grads with d(loss_k)/d(params_k)."""
        if self.functional:
            grads, losses = self.grad_fn(dict(zip(self.names, self.params)),
                                         dict(zip(self.buffer_names, self.buffers)), inputs, labels)
            for target, name in zip(self.grads, self.names):
                target.copy_(grads[name])
            return losses
        params, grads = self.params, self.grads
        activations = [inputs]
        hidden = inputs
        last = len(self.layers) - 1
        for layer, (weight_index, bias_index) in enumerate(self.layers):
            hidden = self._linear(params, weight_index, bias_index, hidden)
            if layer < last:
                hidden = hidden.relu_()
            activations.append(hidden)
        log_probs = torch.log_softmax(hidden, dim=2)
        targets = labels.unsqueeze(2)
        losses = log_probs.gather(2, targets).squeeze(2).mean(dim=1).neg()
        # d mean-NLL / d log-probs is -1/B at the target; the log-softmax backward is the one autograd uses.
        upstream = torch.zeros_like(log_probs).scatter_(2, targets, -1.0 / labels.shape[1])
        grad = torch._log_softmax_backward_data(upstream, log_probs, 2, log_probs.dtype)
        for layer in range(last, -1, -1):
            weight_index, bias_index = self.layers[layer]
            torch.bmm(grad.transpose(1, 2), activations[layer], out=grads[weight_index])
            if bias_index is not None:
                torch.sum(grad, dim=1, out=grads[bias_index])
            if layer > 0:
                grad = torch.bmm(grad, params[weight_index])
                grad = torch.ops.aten.threshold_backward(grad, activations[layer], 0)  # ReLU's own backward
        return losses

    def _member_loss(self, params: dict, buffers: dict, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """One member's training loss, as train_model computes it (BatchNorm updates the member's buffers)."""
        return F.cross_entropy(functional_call(self.train_base, (params, buffers), (inputs,)), labels)

    @staticmethod
    def _linear(params, weight_index: int, bias_index: int | None, hidden: torch.Tensor) -> torch.Tensor:
        weight = params[weight_index].transpose(1, 2)
        if bias_index is None:
            return torch.bmm(hidden, weight)
        return torch.baddbmm(params[bias_index].unsqueeze(1), hidden, weight)

    def train_step(self, data: DataSplits, augment) -> None:
        """One batched step of every member: its batch, forward and backward, masked gradients and optimizer
        update; then every member's step counts advance."""
        inputs, labels = self.batch(data, augment)
        self.running_loss += self.loss_and_gradients(inputs, labels)
        self.optimizer_step(self.optimizer_groups())
        for progress in self.progress:
            progress.optimizer_steps += 1
            progress.has_momentum = "momentum_buffer" in self.state_keys

    def optimizer_groups(self) -> dict[tuple[bool, float], list[tuple[int, int, int]]]:
        """Runs (start, stop, optimizer step count) of adjacent members that step alike, by (momentum, lr)."""
        learning_rates: dict[tuple[int, int], float] = {}
        keys = []
        for progress in self.progress:
            schedule_key = (progress.step, progress.total)
            if schedule_key not in learning_rates:
                learning_rates[schedule_key] = learning_rate_at(progress.step, self.config, progress.total,
                                                                self.per_epoch)
            keys.append((progress.has_momentum, learning_rates[schedule_key], progress.optimizer_steps))
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

    def optimizer_step(self, groups: dict[tuple[bool, float], list[tuple[int, int, int]]]) -> None:
        """Mask the gradients, then step every member with its own step count and learning rate (`groups`:
        `optimizer_groups()`)."""
        if self.masked:
            torch._foreach_mul_([self.grads[index] for index in self.masked],
                                [self.masks[index] for index in self.masked])
        for (has_momentum, lr), runs in groups.items():
            self._step_runs(runs, has_momentum, lr)

    def _step_runs(self, runs: list[tuple[int, int, int]], has_momentum: bool, lr: float) -> None:
        """One fused optimizer call over the members start:stop of every run (start, stop, optimizer step count)."""
        hyper = self.hyper
        width = len(self.params)

        def rows_of(tensor_rows):
            if len(runs) == 1:
                return tensor_rows[runs[0][0] * width : runs[0][1] * width]
            return [tensor for start, stop, _ in runs for tensor in tensor_rows[start * width : stop * width]]

        params, grads = rows_of(self.param_rows), rows_of(self.grad_rows)
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

    # --- evaluation ---

    def evaluate(self, rows: list[int], inputs: torch.Tensor, labels: torch.Tensor, with_loss: bool = True,
                 params: list[torch.Tensor] | None = None, buffers: list[torch.Tensor] | None = None):
        """Mean cross-entropy (None unless `with_loss`) and accuracy of the members in `rows` on a whole split,
        with their current weights or the stacked `params` (and BatchNorm `buffers`) given; in eval mode."""
        params = self.params if params is None else params
        buffers = self.buffers if buffers is None else buffers
        if rows != list(range(len(self.progress))):
            select = torch.tensor(rows, dtype=torch.long, device=self.device)
            params = [param.index_select(0, select) for param in params]
            buffers = [buffer.index_select(0, select) for buffer in buffers]
        count = len(rows)
        if self.functional:
            chunk = max(1, eval_batch_size(inputs[0].numel()) // count)
            logits_of = vmap(self._member_logits, in_dims=(0, 0, None))
            logits_fn = lambda batch: logits_of(dict(zip(self.names, params)),  # noqa: E731
                                                dict(zip(self.buffer_names, buffers)), batch)
        else:
            widest = max(params[weight_index].shape[1] for weight_index, _ in self.layers)
            chunk = max(1, min(EVAL_BATCH, EVAL_CHUNK_FLOATS // (count * widest)))
            logits_fn = lambda batch: self._shared_input_logits(params, batch)  # noqa: E731
        total_loss = torch.zeros(count, dtype=torch.float64, device=self.device)
        correct = torch.zeros(count, dtype=torch.int64, device=self.device)
        flat = self.flat_inputs(inputs)
        for start in range(0, len(flat), chunk):
            logits = logits_fn(flat[start : start + chunk])
            chunk_labels = labels[start : start + chunk]
            if with_loss:  # per member, as evaluate() sums it, so the reported losses round the same way
                for row in range(count):
                    total_loss[row] += F.cross_entropy(logits[row], chunk_labels, reduction="sum").double()
            correct += (logits.argmax(dim=2) == chunk_labels).sum(dim=1)
        accuracy = (correct.double() / len(flat)).tolist()
        return ((total_loss / len(flat)).tolist() if with_loss else None), accuracy

    def _member_logits(self, params: dict, buffers: dict, inputs: torch.Tensor) -> torch.Tensor:
        return functional_call(self.eval_base, (params, buffers), (inputs,))

    def _shared_input_logits(self, params, inputs: torch.Tensor) -> torch.Tensor:
        """Logits [K, n, classes] of every member on the same inputs; the first layer is one wide matmul."""
        weight_index, bias_index = self.layers[0]
        count, width = params[weight_index].shape[:2]
        weight = params[weight_index].reshape(count * width, -1)
        if bias_index is None:
            hidden = inputs @ weight.t()
        else:
            hidden = torch.addmm(params[bias_index].reshape(-1), inputs, weight.t())
        hidden = hidden.view(len(inputs), count, width).transpose(0, 1)
        for weight_index, bias_index in self.layers[1:]:
            hidden = self._linear(params, weight_index, bias_index, hidden.relu_())
        return hidden


# --- the loop -----------------------------------------------------------------------------------------


@torch.no_grad()
def train_population(
    members: Sequence[PopulationMember],
    data: DataSplits,
    config: TrainConfig,
    *,
    on_progress: Callable[[int], None] | None = None,
    checkpoint_interval_s: float = 30.0,
    stop_after_iterations: int | None = None,
    augment: Callable[[torch.Tensor, int], torch.Tensor] | None = None,
    test_at_every_minimum: bool = False,
) -> list[TrainResult]:
    """Train every member as `train_model` would train it alone, all in one batched step; results in input order.

    Each member ends with the weights, metrics.jsonl rows, rewind snapshots and TrainResult of the same job
    trained alone, to float tolerance. A member with a `job_dir` checkpoints there like train_model (the same
    file format), so a killed population resumes exactly, by this function or by train_model. Members that
    finish leave the population; the rest go on. `stop_after_iterations` raises TrainingInterrupted after that
    many batched steps (to simulate a kill in tests). `on_progress(n)` reports n more member-steps done.

    Test accuracy: train_model evaluates the test set at every new validation minimum, but only the last
    minimum's is reported (early_stop_test_accuracy). By default the population keeps a copy of the weights at
    the minimum and evaluates the test set once it is final (or before a checkpoint), which gives the same
    TrainResult with far fewer test-set passes; metrics.jsonl rows then carry no test_accuracy.
    `test_at_every_minimum=True` evaluates and logs it at every minimum, as train_model does.
    """
    if not members:
        return []
    keep_freed_memory()
    population = _Population(members, data, config, keep_best=not test_at_every_minimum)
    eval_every = parse_step(config.eval_every, population.per_epoch)
    for row, progress in enumerate(population.progress):
        checkpoint = (read_checkpoint_or_set_aside(progress.checkpoint_path, population.device)
                      if progress.checkpoint_path is not None else None)
        if checkpoint is not None:
            population.restore_checkpoint(row, checkpoint)
            reset_metrics(progress.metrics_path, keep_through_step=progress.step)
            if on_progress:
                on_progress(progress.step - progress.member.start_step)
        elif progress.metrics_path is not None:
            reset_metrics(progress.metrics_path, keep_through_step=None)
        member = progress.member
        if progress.step == member.start_step and member.start_step in member.snapshot_steps and member.on_snapshot:
            member.on_snapshot(progress.step, *population.member_model_and_optimizer(row))

    results: list[TrainResult | None] = [None] * len(members)
    _finish_members(population, data, results)
    iterations = 0
    while population.progress:
        population.train_step(data, augment)
        due = []
        for row, progress in enumerate(population.progress):
            progress.step += 1
            progress.steps_since_eval += 1
            member = progress.member
            if progress.step in member.snapshot_steps and member.on_snapshot:
                member.on_snapshot(progress.step, *population.member_model_and_optimizer(row))
            if progress.step % eval_every == 0 or progress.step == progress.total:
                due.append(row)
        if due:
            _evaluate_members(population, data, due, on_progress, checkpoint_interval_s, test_at_every_minimum)
        _finish_members(population, data, results)
        iterations += 1
        if stop_after_iterations is not None and iterations >= stop_after_iterations and population.progress:
            raise TrainingInterrupted(f"stopped after {iterations} population steps")
    return results


def _evaluate_members(population: _Population, data: DataSplits, rows: list[int], on_progress,
                      checkpoint_interval_s: float, test_at_every_minimum: bool) -> None:
    """The evaluation point of the members in `rows`: validation for all, test only at a new minimum (and
    unless `test_at_every_minimum`, only once that minimum is reported or checkpointed)."""
    val_losses, val_accuracies = population.evaluate(rows, data.x_val, data.y_val)
    improved = [row for row, loss in zip(rows, val_losses) if population.progress[row].record.improves(loss)]
    test_accuracy = {}
    if improved and test_at_every_minimum:
        _, accuracies = population.evaluate(improved, data.x_test, data.y_test, with_loss=False)
        test_accuracy = dict(zip(improved, accuracies))
    elif improved:
        population.remember_best(improved)
    train_losses = population.running_loss[rows].tolist()
    population.running_loss[rows] = 0.0
    progressed, now, checkpoint_rows = 0, time.monotonic(), []
    for row, val_loss, val_accuracy, running in zip(rows, val_losses, val_accuracies, train_losses):
        progress = population.progress[row]
        metrics = progress.record.record(progress.step, running / progress.steps_since_eval, val_loss, val_accuracy,
                                         test_accuracy.get(row))
        progress.steps_since_eval = 0
        if progress.metrics_path is not None:
            append_jsonl(progress.metrics_path, metrics)
        progressed += progress.step - progress.reported_step
        progress.reported_step = progress.step
        if (progress.checkpoint_path is not None and progress.step < progress.total
                and now - progress.last_checkpoint_time >= checkpoint_interval_s):
            checkpoint_rows.append(row)
            progress.last_checkpoint_time = now
    if checkpoint_rows:  # a checkpoint holds a complete early-stop record, as train_model's does
        population.resolve_pending_tests(checkpoint_rows, data)
        for row in checkpoint_rows:
            population.save_checkpoint(row)
    if on_progress and progressed:
        on_progress(progressed)


def _finish_members(population: _Population, data: DataSplits, results: list) -> None:
    """Report and remove the members that reached their total steps (final test and train evaluations)."""
    rows = [row for row, progress in enumerate(population.progress) if progress.step >= progress.total]
    if not rows:
        return
    unobserved = [row for row in rows if population.progress[row].record.last_row is None
                  or population.progress[row].record.last_row["step"] != population.progress[row].step]
    if unobserved:  # no training happened (start >= total): observe the start as train_model does
        val_losses, val_accuracies = population.evaluate(unobserved, data.x_val, data.y_val)
        for row, val_loss, val_accuracy in zip(unobserved, val_losses, val_accuracies):
            record = population.progress[row].record
            test = None
            if record.improves(val_loss):
                test = population.evaluate([row], data.x_test, data.y_test, with_loss=False)[1][0]
            record.record(population.progress[row].step, float("nan"), val_loss, val_accuracy, test)
    population.resolve_pending_tests(rows, data)
    # the final weights' test accuracy is known when the last evaluation was the minimum (train_model's rule)
    missing_test = [row for row in rows if population.progress[row].record.best_step != population.progress[row].step]
    final_test = {}
    if missing_test:
        _, accuracies = population.evaluate(missing_test, data.x_test, data.y_test, with_loss=False)
        final_test = dict(zip(missing_test, accuracies))
    train_losses, train_accuracies = population.evaluate(rows, data.x_train, data.y_train)
    for row, train_loss, train_accuracy in zip(rows, train_losses, train_accuracies):
        progress = population.progress[row]
        last_row = progress.record.last_row
        test_accuracy = final_test.get(row, progress.record.best_test_accuracy)
        results[progress.index] = progress.record.result(progress.step, last_row["val_loss"], test_accuracy,
                                                         train_loss, train_accuracy)
        model = progress.member.model.to(population.device)
        model.load_state_dict({name: value.clone() for name, value in population.member_state(row).items()})
        if progress.checkpoint_path is not None:
            progress.checkpoint_path.unlink(missing_ok=True)
    population.keep([row for row in range(len(population.progress)) if row not in set(rows)])


__all__ = [
    "PopulationMember",
    "can_vectorize",
    "functional_vectorizable",
    "member_memory_bytes",
    "mlp_linears",
    "population_eval_bytes",
    "prefers_population",
    "train_population",
]
