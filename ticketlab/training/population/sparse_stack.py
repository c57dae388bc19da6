"""A Linear/ReLU population's masked layers on sparse kernels: all K members at once as one block-diagonal product.

Member k's weight [out, in] is the k-th diagonal block of a [K*out, K*in] CSR matrix, so a step of the whole
population is three sparse calls per layer instead of 3K (`benchmarks/population_sparse_product.py` measures both
against the dense `bmm` kernels):
- forward: the block-diagonal CSR times the members' stacked inputs [K*in, B];
- input gradient: its transpose times the stacked output gradients [K*out, B];
- weight gradient: `sampled_addmm` of G^T [K*out, B] with X [B, K*in] at the kept positions only. They all lie in
  the diagonal blocks, so a member's gradient sums over its own batch only.

The methods take and return activations and gradients **feature-major**, [K*features, B]: that is the layout the
CSR products read and write, and what `sampled_addmm` takes (its second operand as the transpose of a contiguous
[K*in, B]). Consecutive sparse layers then pass their activations on with no copy; `feature_major` and
`batch_major` convert at the boundaries with the dense layers ([K, B, features]); the number of dimensions tells
the two layouts apart. The transposing copies the batch-major interface made on every call were half of a late
level's training time (profiled at 3.6% of LeNet-300-100's weights, 8 members: 53% of CPU time in `copy_`).

Each output element is the sum a single job's CSR kernels (`ticketlab.training.sparse_linear`) form, in the same
order; copies and layouts move values, never round them. The weight gradient is a dense stack with exact zeros
where pruned, so the optimizer, checkpoints and the exact-mask step are unchanged. The index structure is rebuilt
only when a member's mask changes (a mask schedule's install) or members leave the stack.
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

    def forward(self, weights: torch.Tensor, bias: torch.Tensor | None, stacked: torch.Tensor) -> torch.Tensor:
        """stacked [K*in, B] (feature-major) -> [K*out, B]: each member's W_k x + b_k."""
        csr = _csr(self.rows, self.columns, weights.reshape(-1).index_select(0, self.kept), self.shape)
        return torch.mm(csr, stacked) if bias is None else torch.addmm(bias.reshape(-1, 1), csr, stacked)

    def forward_shared(self, weights: torch.Tensor, bias: torch.Tensor | None, inputs: torch.Tensor) -> torch.Tensor:
        """inputs [n, in], the same for every member -> [K*out, n] (feature-major)."""
        csr = _csr(self.rows, self.stacked_columns, weights.reshape(-1).index_select(0, self.kept),
                   (self.shape[0], self.in_features))
        inputs_t = inputs.t().contiguous()
        return torch.mm(csr, inputs_t) if bias is None else torch.addmm(bias.reshape(-1, 1), csr, inputs_t)

    def input_gradient(self, weights: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        """grad [K*out, B] -> [K*in, B] (both feature-major): each member's W_k^T g."""
        csr_t = _csr(self.rows_t, self.columns_t, weights.reshape(-1).index_select(0, self.kept_t),
                     (self.shape[1], self.shape[0]))
        return torch.mm(csr_t, grad)

    def weight_gradient(self, grad: torch.Tensor, stacked: torch.Tensor, out: torch.Tensor) -> None:
        """Each member's g x^T at its kept positions into `out` [K, out, in], 0 elsewhere; `grad` [K*out, B] and
        the layer's input `stacked` [K*in, B] feature-major (its transpose is the operand `sampled_addmm` reads
        without a copy)."""
        values = torch.sparse.sampled_addmm(self.pattern, grad, stacked.t(), beta=0.0).values()
        out.zero_().view(-1).index_copy_(0, self.kept, values)


def feature_major(hidden: torch.Tensor) -> torch.Tensor:
    """[K, B, features] -> [K*features, B], contiguous (a copy); a feature-major (2-d) tensor as it is."""
    if hidden.dim() == 2:
        return hidden
    count, batch, features = hidden.shape
    return hidden.transpose(1, 2).reshape(count * features, batch)


def batch_major(stacked: torch.Tensor, count: int) -> torch.Tensor:
    """[K*features, B] -> [K, B, features], contiguous (a copy), as a single job's layer returns it: what reads it
    next (a dense layer, the log-softmax) rounds alike; a batch-major (3-d) tensor as it is."""
    if stacked.dim() == 3:
        return stacked
    return stacked.view(count, -1, stacked.shape[1]).transpose(1, 2).contiguous()


def batch_sum(stacked: torch.Tensor, count: int, out: torch.Tensor) -> torch.Tensor:
    """Each member's sum over the batch of a feature-major [K*features, B] into `out` [K, features]: a reduction
    along contiguous rows, the order a single job's sparse layer sums its [features, B] bias gradient in
    (`sparse_linear`); a strided sum over a transposed view would round differently."""
    return torch.sum(stacked.view(count, -1, stacked.shape[1]), dim=2, out=out)


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
