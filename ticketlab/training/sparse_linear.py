"""Masked Linear layers on sparse kernels: the forward and the input gradient as CSR x dense products over the
kept weights only, the weight gradient as a sampled dense-dense product at the kept positions only.

What changes against the dense kernels is the arithmetic, not the training: the weight gradient is a dense tensor
with exact zeros at the pruned positions, so the engine's exact-mask step (`masked_step`) and the optimizer run
unchanged, and pruned weights stay exactly 0. The sums are the same sums in another order, so results agree with
the dense path up to float rounding (`SPARSE_TOLERANCE`), not bit for bit; the kernels are deterministic, so a
run on sparse kernels repeats (and resumes) bit for bit. The index structure of a mask is built once and rebuilt
only when the mask tensor changes in place (a `MaskSchedule`); the kept values are gathered from the dense
weight at every call, so the weight stays one ordinary dense parameter (state dicts, checkpoints, optimizers).

`sparse_linear_layers(model, masks, names)` swaps the forward of the named nn.Linear modules for the duration of
a `with` block; models stay unaware of it.
"""

from __future__ import annotations

import copy
import warnings
from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn

# Largest |sparse - dense| / (|dense| + 1) measured on the forward, input gradient and weight gradient of
# LeNet-300-100 and Conv-2 layers (fp32, batch 60): about 1e-6; the documented bound leaves room for longer sums.
SPARSE_TOLERANCE = 1e-5


class MaskLayout:
    """The fixed index structure of one [out, in] mask: where its kept entries lie in the flat weight, as the CSR
    rows of the weight and of its transpose, and the mask itself as a CSR pattern (for the sampled product)."""

    def __init__(self, mask: torch.Tensor):
        kept_mask = mask.detach() != 0
        out_features, in_features = kept_mask.shape
        self.shape = (out_features, in_features)
        self.kept = kept_mask.reshape(-1).nonzero().squeeze(1)  # flat indices, row-major
        self.rows, self.columns = _csr_indices(self.kept // in_features, self.kept % in_features, out_features)
        kept_t = kept_mask.t().reshape(-1).nonzero().squeeze(1)  # row-major over the transpose: (in, out)
        self.kept_t = (kept_t % out_features) * in_features + kept_t // out_features
        self.rows_t, self.columns_t = _csr_indices(kept_t // out_features, kept_t % out_features, in_features)
        ones = torch.ones(len(self.kept), dtype=mask.dtype if mask.is_floating_point() else torch.float32,
                          device=mask.device)
        with warnings.catch_warnings():  # torch warns once per process that CSR support is in beta
            warnings.simplefilter("ignore", UserWarning)
            self.pattern = _csr(self.rows, self.columns, ones, self.shape)
        self.density = len(self.kept) / max(1, kept_mask.numel())

    def weight_csr(self, weight: torch.Tensor) -> torch.Tensor:
        return _csr(self.rows, self.columns, weight.reshape(-1).index_select(0, self.kept), self.shape)

    def weight_t_csr(self, weight: torch.Tensor) -> torch.Tensor:
        return _csr(self.rows_t, self.columns_t, weight.reshape(-1).index_select(0, self.kept_t),
                    (self.shape[1], self.shape[0]))


def _csr(rows: torch.Tensor, columns: torch.Tensor, values: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    # the indices come from `MaskLayout`, valid by construction: no per-call invariant check
    return torch.sparse_csr_tensor(rows, columns, values, shape, check_invariants=False)


def _csr_indices(rows: torch.Tensor, columns: torch.Tensor, row_count: int) -> tuple[torch.Tensor, torch.Tensor]:
    # 32-bit indices: the CPU kernels (MKL) take them without a conversion per call
    index_type = torch.int32 if max(row_count, len(columns)) < 2**31 - 1 else torch.int64
    counts = torch.bincount(rows, minlength=row_count)
    compressed = torch.zeros(row_count + 1, dtype=index_type, device=rows.device)
    compressed[1:] = counts.cumsum(0)
    return compressed, columns.to(index_type).contiguous()


class SparseMaskedLinear(torch.autograd.Function):
    """y = x W^T + b with W zero outside `layout`: gradients for x, W (dense, exactly 0 where pruned) and b."""

    @staticmethod
    def forward(ctx, inputs, weight, bias, layout: MaskLayout):
        # the products run feature-major: CSR [out, in] x X^T [in, B]; X^T is also what the weight gradient's
        # sampled product reads (as the transpose of a contiguous tensor: no copy inside), so it is kept for it
        inputs_t = inputs.reshape(-1, layout.shape[1]).t().contiguous()
        csr = layout.weight_csr(weight.detach())
        if bias is None:
            outputs = torch.mm(csr, inputs_t).t().contiguous()
        else:
            outputs = torch.addmm(bias.detach().unsqueeze(1), csr, inputs_t).t().contiguous()
        ctx.layout, ctx.input_shape, ctx.has_bias = layout, inputs.shape, bias is not None
        ctx.save_for_backward(inputs_t, weight)
        return outputs.reshape(*inputs.shape[:-1], layout.shape[0])

    @staticmethod
    def backward(ctx, grad_outputs):
        inputs_t, weight = ctx.saved_tensors
        layout = ctx.layout
        grad_inputs = grad_weight = grad_bias = None
        grad_t = grad_outputs.reshape(-1, layout.shape[0]).t().contiguous()
        if ctx.needs_input_grad[0]:
            grad_inputs = torch.mm(layout.weight_t_csr(weight.detach()), grad_t).t().reshape(ctx.input_shape)
        if ctx.needs_input_grad[1]:
            kept_values = torch.sparse.sampled_addmm(layout.pattern, grad_t, inputs_t.t(), beta=0.0).values()
            grad_weight = torch.zeros(weight.numel(), dtype=weight.dtype, device=weight.device)
            grad_weight = grad_weight.index_copy_(0, layout.kept, kept_values).view(layout.shape)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = grad_t.sum(1)  # along contiguous rows: the order a population's members sum in
        return grad_inputs, grad_weight, grad_bias, None


class _LayoutOf:
    """The layout of one mask tensor, rebuilt when the tensor is changed in place (a mask schedule's install)."""

    def __init__(self, mask: torch.Tensor):
        self.mask, self.version, self.layout = mask, mask._version, MaskLayout(mask)

    def __deepcopy__(self, memo) -> "_LayoutOf":  # CSR tensors cannot be deep-copied: rebuild from the copied mask
        return _LayoutOf(copy.deepcopy(self.mask, memo))

    def current(self) -> MaskLayout:
        if self.mask._version != self.version:
            self.version, self.layout = self.mask._version, MaskLayout(self.mask)
        return self.layout


def sparse_linear(inputs: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                  layout: MaskLayout) -> torch.Tensor:
    """`F.linear(inputs, weight, bias)` for a weight that is zero outside `layout`, on sparse kernels."""
    return SparseMaskedLinear.apply(inputs, weight, bias, layout)


def masked_linear_names(model: nn.Module, masks: dict[str, torch.Tensor]) -> list[str]:
    """The nn.Linear modules of `model` whose weight `masks` prunes, by module name. Exactly nn.Linear: a subclass
    may compute something else in its forward, or never call it (attention's out_proj)."""
    return [name for name, module in model.named_modules()
            if name and type(module) is nn.Linear and f"{name}.weight" in masks]


class SparseLayers:
    """The swapped forwards of `sparse_linear_layers`; `dense()` puts the layers' own forwards back for a block
    (a mask schedule scores with the dense gradients, e.g. RigL's regrowth)."""

    def __init__(self, swaps: list[tuple[nn.Module, object]]):
        self.swaps = swaps

    def install(self) -> None:
        for module, forward in self.swaps:
            module.forward = forward

    def remove(self) -> None:
        for module, _ in self.swaps:
            module.__dict__.pop("forward", None)

    @contextmanager
    def dense(self) -> Iterator[None]:
        self.remove()
        try:
            yield
        finally:
            self.install()


@contextmanager
def sparse_linear_layers(model: nn.Module, masks: dict[str, torch.Tensor], names) -> Iterator[SparseLayers]:
    """Within the block, the named nn.Linear modules of `model` run on sparse kernels under their mask in `masks`
    (the tensors the engine updates in place); their own forward is back afterwards."""
    modules = dict(model.named_modules())
    layers = SparseLayers([(modules[name], _SparseForward(modules[name], _LayoutOf(masks[f"{name}.weight"])))
                           for name in names])
    layers.install()
    try:
        yield layers
    finally:
        layers.remove()


class _SparseForward:
    """A Linear module's forward on sparse kernels. An object, not a closure: a deep copy of the model (a score's
    probe) then gets a forward on its own copy of the module, where a copied closure would still call the original."""

    def __init__(self, module: nn.Linear, layout_of: _LayoutOf):
        self.module, self.layout_of = module, layout_of

    def __call__(self, inputs: torch.Tensor) -> torch.Tensor:
        return SparseMaskedLinear.apply(inputs, self.module.weight, self.module.bias, self.layout_of.current())
