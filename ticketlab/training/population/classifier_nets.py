"""The two batched forward/backward paths of classifier populations, over a `RowStack`'s [K, *shape] stacks.

- Linear/ReLU stacks (`LinearReluNet`): hand-stacked tensors and a hand-written backward.
- Conv nets and other vectorizable models (`FunctionalNet`): the model's own forward under
  vmap(grad(functional_call)): K convolutions become one grouped convolution and BatchNorm keeps per-member batch
  statistics; the running statistics are stacked buffers, checkpointed per member.

Why a hand-written backward for Linear/ReLU stacks (not autograd through bmm, not torch.func.vmap):
- The network is Flatten + (Linear, ReLU)* + Linear, whose backward is three lines per layer. Writing it lets
  every weight gradient land, contiguous and in the weight's own [K, out, in] layout, in a buffer allocated once
  (`bmm(..., out=)`), with no autograd graph. For 16 LeNet-300-100 members (one thread, CPU time,
  benchmarks/population_speed.py) a forward+backward took 19 ms this way, 23 ms with autograd through bmm and
  22 ms with vmap(grad(functional_call)); the matmuls themselves run near the matmul peak.
- With one thread on CPU, a member's batched matmuls round exactly as the single-matrix ones of `train_model` do.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.func import functional_call, grad_and_value, vmap
from torch.nn import functional as F

from ticketlab.training.evaluation import EVAL_BATCH, eval_batch_size
from ticketlab.training.population.sparse_stack import (BlockDiagonalLayout, StackLayouts, batch_major, batch_sum,
                                                        feature_major)
from ticketlab.training.population.stack import RowStack

# Evaluation runs in chunks whose widest activation holds at most this many floats for the whole population
# (8 MiB: it stays in cache between layers; 32 MiB chunks ran at ~80% of the matmul peak, 8 MiB at ~90% for 16
# LeNet-300-100 members).
EVAL_CHUNK_FLOATS = 1 << 21


class LinearReluNet:
    """Flatten? + (Linear, ReLU)* + Linear over stacked weights: batched matmuls and a hand-written backward."""

    def __init__(self, template: nn.Module, linears: list[nn.Linear], stack: RowStack) -> None:
        index_of = {name: index for index, name in enumerate(stack.names)}
        names = {id(parameter): name for name, parameter in template.named_parameters()}
        self.layers = [
            (index_of[names[id(layer.weight)]], index_of[names[id(layer.bias)]] if layer.bias is not None else None)
            for layer in linears
        ]
        self.flattens = any(type(module) is nn.Flatten for module in template.modules())
        self.sparse = StackLayouts(())  # the layers on block-diagonal sparse kernels (`use_sparse`)

    def use_sparse(self, weight_indices) -> None:
        """Run the layers whose weight is `weight_indices` (the stack's parameter indices) on block-diagonal sparse
        kernels (`sparse_stack`); an empty set: every layer on the dense `bmm` kernels."""
        self.sparse = StackLayouts(weight_indices)

    def flat_inputs(self, inputs: torch.Tensor) -> torch.Tensor:
        """The inputs as the first layer takes them: flattened to [N, features]."""
        if self.flattens:
            return inputs.reshape(len(inputs), -1)
        if inputs.dim() != 2:
            raise ValueError("a population model without nn.Flatten needs inputs of shape [N, features]")
        return inputs

    def loss_and_gradients(self, stack: RowStack, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of each member on its batch ([K]); fills stack.grads with d(loss_k)/d(params_k).
        Activations and gradients stay in the layout their layer's kernels take: [K, B, features] for the dense
        `bmm` kernels, feature-major [K*features, B] between consecutive sparse layers (`sparse_stack`)."""
        params, grads = stack.params, stack.grads
        count = len(inputs)
        layouts = [self.sparse.get(stack.masks, weight_index) if weight_index in self.sparse else None
                   for weight_index, _ in self.layers]
        layer_inputs = []  # each layer's input, in the layout of its kernels (2-d: feature-major)
        hidden = inputs
        last = len(self.layers) - 1
        for layer, ((weight_index, bias_index), layout) in enumerate(zip(self.layers, layouts)):
            if layout is not None:
                layer_inputs.append(feature_major(hidden))
                bias = None if bias_index is None else params[bias_index]
                hidden = layout.forward(params[weight_index], bias, layer_inputs[-1])
            else:
                layer_inputs.append(batch_major(hidden, count))
                hidden = _linear(params, weight_index, bias_index, layer_inputs[-1])
            if layer < last:
                hidden = hidden.relu_()
        log_probs = torch.log_softmax(batch_major(hidden, count), dim=2)
        targets = labels.unsqueeze(2)
        losses = log_probs.gather(2, targets).squeeze(2).mean(dim=1).neg()
        # d mean-NLL / d log-probs is -1/B at the target; the log-softmax backward is the one autograd uses.
        upstream = torch.zeros_like(log_probs).scatter_(2, targets, -1.0 / labels.shape[1])
        grad = torch._log_softmax_backward_data(upstream, log_probs, 2, log_probs.dtype)
        for layer in range(last, -1, -1):
            weight_index, bias_index = self.layers[layer]
            layout = layouts[layer]
            if layout is None:
                grad = batch_major(grad, count)
                torch.bmm(grad.transpose(1, 2), layer_inputs[layer], out=grads[weight_index])
                if bias_index is not None:
                    torch.sum(grad, dim=1, out=grads[bias_index])
                if layer > 0:
                    grad = torch.bmm(grad, params[weight_index])
            else:
                grad = feature_major(grad)
                layout.weight_gradient(grad, layer_inputs[layer], grads[weight_index])
                if bias_index is not None:
                    batch_sum(grad, count, grads[bias_index])
                if layer > 0:
                    grad = layout.input_gradient(params[weight_index], grad)
            if layer > 0:  # the input of this layer is in the layout the gradient now has
                grad = torch.ops.aten.threshold_backward(grad, layer_inputs[layer], 0)  # ReLU's own backward
        return losses

    def eval_chunk(self, params: list[torch.Tensor], count: int, inputs: torch.Tensor) -> int:
        """Examples per evaluation chunk for `count` members."""
        widest = max(params[weight_index].shape[1] for weight_index, _ in self.layers)
        return max(1, min(EVAL_BATCH, EVAL_CHUNK_FLOATS // (count * widest)))

    def eval_layouts(self, masks: list[torch.Tensor | None]) -> dict:
        """The block-diagonal layouts of the sparse layers for the stacked `masks` of the members evaluated."""
        return {index: BlockDiagonalLayout(masks[index]) for index, _ in self.layers if index in self.sparse}

    def logits(self, params: list[torch.Tensor], buffers: list[torch.Tensor], inputs: torch.Tensor,
               layouts: dict | None = None) -> torch.Tensor:
        """Logits [K, n, classes] of every member on the same inputs; the first layer is one wide matmul. The
        layers in `layouts` (`eval_layouts`) run on the sparse kernels their training runs on, passing their
        activations on feature-major as training does."""
        layouts = layouts or {}
        weight_index, bias_index = self.layers[0]
        bias = None if bias_index is None else params[bias_index]
        count = len(params[weight_index])
        if weight_index in layouts:
            hidden = layouts[weight_index].forward_shared(params[weight_index], bias, inputs)
        else:
            width = params[weight_index].shape[1]
            weight = params[weight_index].reshape(count * width, -1)
            hidden = inputs @ weight.t() if bias is None else torch.addmm(bias.reshape(-1), inputs, weight.t())
            hidden = hidden.view(len(inputs), count, width).transpose(0, 1)
        for weight_index, bias_index in self.layers[1:]:
            hidden = hidden.relu_()
            if weight_index in layouts:
                bias = None if bias_index is None else params[bias_index]
                hidden = layouts[weight_index].forward(params[weight_index], bias, feature_major(hidden))
            else:
                hidden = _linear(params, weight_index, bias_index, batch_major(hidden, count))
        return batch_major(hidden, count)


def _linear(params, weight_index: int, bias_index: int | None, hidden: torch.Tensor) -> torch.Tensor:
    weight = params[weight_index].transpose(1, 2)
    if bias_index is None:
        return torch.bmm(hidden, weight)
    return torch.baddbmm(params[bias_index].unsqueeze(1), hidden, weight)


class FunctionalNet:
    """The model's own forward under vmap over the stacks (BatchNorm updates each member's own buffers)."""

    def __init__(self, template: nn.Module, stack: RowStack) -> None:
        self.names, self.buffer_names = stack.names, stack.buffer_names
        self.train_base = copy.deepcopy(template).to("meta").train()  # structure only: weights come stacked
        self.eval_base = copy.deepcopy(template).to("meta").eval()
        self.grad_fn = vmap(grad_and_value(self._member_loss))
        self.logits_of = vmap(self._member_logits, in_dims=(0, 0, None))

    def flat_inputs(self, inputs: torch.Tensor) -> torch.Tensor:
        return inputs

    def loss_and_gradients(self, stack: RowStack, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of each member on its batch ([K]); fills stack.grads with d(loss_k)/d(params_k)."""
        grads, losses = self.grad_fn(dict(zip(self.names, stack.params)),
                                     dict(zip(self.buffer_names, stack.buffers)), inputs, labels)
        for target, name in zip(stack.grads, self.names):
            target.copy_(grads[name])
        return losses

    def _member_loss(self, params: dict, buffers: dict, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """One member's training loss, as train_model computes it."""
        return F.cross_entropy(functional_call(self.train_base, (params, buffers), (inputs,)), labels)

    def eval_chunk(self, params: list[torch.Tensor], count: int, inputs: torch.Tensor) -> int:
        return max(1, eval_batch_size(inputs[0].numel()) // count)

    def eval_layouts(self, masks: list[torch.Tensor | None]) -> dict:
        return {}  # conv nets train on the dense kernels

    def logits(self, params: list[torch.Tensor], buffers: list[torch.Tensor], inputs: torch.Tensor,
               layouts: dict | None = None) -> torch.Tensor:
        return self.logits_of(dict(zip(self.names, params)), dict(zip(self.buffer_names, buffers)), inputs)

    def _member_logits(self, params: dict, buffers: dict, inputs: torch.Tensor) -> torch.Tensor:
        return functional_call(self.eval_base, (params, buffers), (inputs,))
