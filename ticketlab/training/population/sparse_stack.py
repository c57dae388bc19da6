"""A Linear/ReLU population's masked layers on sparse kernels: all K members at once as one block-diagonal product.

Member k's weight [out, in] is the k-th diagonal block of a [K*out, K*in] CSR matrix, so a step of the whole
population is three sparse calls per layer instead of 3K (`benchmarks/population_sparse_product.py` measures both
against the dense `bmm` kernels):
- forward: the block-diagonal CSR times the members' stacked inputs [K*in, B];
- input gradient: its transpose times the stacked output gradients [K*out, B];
- weight gradient: `sampled_addmm` of G^T [K*out, B] with X [B, K*in] at the kept positions only. They all lie in
  the diagonal blocks, so a member's gradient sums over its own batch only.

Each output element is the sum a single job's CSR kernels (`ticketlab.training.sparse_linear`) form, in the same
order. The weight gradient is a dense stack with exact zeros where pruned, so the optimizer, checkpoints and the
exact-mask step are unchanged. The index structure is rebuilt only when a member's mask changes (a mask schedule's
install) or members leave the stack.
"""

from __future__ import annotations

import warnings

import torch

from ticketlab.training.sparse_linear import _csr, _csr_indices


class BlockDiagonalLayout:
    """The CSR structure of the block-diagonal [K*out, K*in] matrix of K members' masks ([K, out, in]), of its
    transpose, and of the [K*out, in] matrix of the blocks stacked (members on the same inputs: evaluation).
    `kept` indexes the stacked weight's flat storage in the order of the CSR values."""

    def __init__(self, masks: torch.Tensor):
        count, out_features, in_features = masks.shape
        kept = (masks != 0).reshape(-1).nonzero().squeeze(1)
        member, within = kept // (out_features * in_features), kept % (out_features * in_features)
        rows, columns = member * out_features + within // in_features, within % in_features
        block_columns = member * in_features + columns
        self.count, self.out_features, self.in_features = count, out_features, in_features
        self.shape = (count * out_features, count * in_features)
        self.kept = kept
        self.rows, self.columns = _csr_indices(rows, block_columns, self.shape[0])
        self.stacked_columns = columns.to(self.columns.dtype)
        order = torch.argsort(block_columns * self.shape[0] + rows)  # row-major over the transpose
        self.kept_t = kept[order]
        self.rows_t, self.columns_t = _csr_indices(block_columns[order], rows[order], self.shape[1])
        with warnings.catch_warnings():  # torch warns once per process that CSR support is in beta
            warnings.simplefilter("ignore", UserWarning)
            self.pattern = _csr(self.rows, self.columns, torch.ones(len(kept), dtype=masks.dtype if
                                                                   masks.is_floating_point() else torch.float32,
                                                                   device=masks.device), self.shape)

    def forward(self, weights: torch.Tensor, bias: torch.Tensor | None, hidden: torch.Tensor) -> torch.Tensor:
        """hidden [K, B, in] -> [K, B, out]: each member's x W_k^T + b_k."""
        batch = hidden.shape[1]
        stacked = hidden.transpose(1, 2).reshape(self.shape[1], batch)
        csr = _csr(self.rows, self.columns, weights.reshape(-1).index_select(0, self.kept), self.shape)
        if bias is None:
            outputs = torch.mm(csr, stacked)
        else:
            outputs = torch.addmm(bias.reshape(-1, 1), csr, stacked)
        # contiguous, as a single job's layer returns it: what reads it next (ReLU, log-softmax) rounds alike
        return outputs.view(self.count, self.out_features, batch).transpose(1, 2).contiguous()

    def forward_shared(self, weights: torch.Tensor, bias: torch.Tensor | None, inputs: torch.Tensor) -> torch.Tensor:
        """inputs [n, in], the same for every member -> [K, n, out]."""
        csr = _csr(self.rows, self.stacked_columns, weights.reshape(-1).index_select(0, self.kept),
                   (self.shape[0], self.in_features))
        inputs_t = inputs.t().contiguous()
        outputs = torch.mm(csr, inputs_t) if bias is None else torch.addmm(bias.reshape(-1, 1), csr, inputs_t)
        return outputs.view(self.count, self.out_features, len(inputs)).transpose(1, 2).contiguous()

    def input_gradient(self, weights: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        """grad [K, B, out] -> [K, B, in]: each member's grad W_k."""
        batch = grad.shape[1]
        csr_t = _csr(self.rows_t, self.columns_t, weights.reshape(-1).index_select(0, self.kept_t),
                     (self.shape[1], self.shape[0]))
        stacked = grad.transpose(1, 2).reshape(self.shape[0], batch)
        return torch.mm(csr_t, stacked).view(self.count, self.in_features, batch).transpose(1, 2)

    def weight_gradient(self, grad: torch.Tensor, hidden: torch.Tensor, out: torch.Tensor) -> None:
        """Each member's grad^T x at its kept positions into `out` [K, out, in], 0 elsewhere."""
        batch = grad.shape[1]
        grad_t = grad.transpose(1, 2).reshape(self.shape[0], batch)
        rows = hidden.transpose(0, 1).reshape(batch, self.shape[1])
        values = torch.sparse.sampled_addmm(self.pattern, grad_t, rows, beta=0.0).values()
        out.zero_().view(-1).index_copy_(0, self.kept, values)


class StackLayouts:
    """The block-diagonal layouts of a stack's sparse layers (weight index -> layout), rebuilt when a mask stack is
    replaced (members left) or changed in place (`RowStack.install_mask`)."""

    def __init__(self, weight_indices) -> None:
        self.weight_indices = frozenset(weight_indices)
        self._built: dict[int, tuple[torch.Tensor, int, BlockDiagonalLayout]] = {}

    def __contains__(self, weight_index: int) -> bool:
        return weight_index in self.weight_indices

    def get(self, masks: list[torch.Tensor | None], weight_index: int) -> BlockDiagonalLayout:
        mask = masks[weight_index]
        built = self._built.get(weight_index)
        if built is None or built[0] is not mask or built[1] != mask._version:  # holding it: no id reuse
            built = (mask, mask._version, BlockDiagonalLayout(mask))
            self._built[weight_index] = built
        return built[2]
