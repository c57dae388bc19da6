"""Sparse-kernel inference: Linear and Conv2d weights held as torch.sparse CSR (or BSR) matrices.

A Linear computes y = W x + b as a sparse-dense product; a Conv2d unfolds its input (im2col) and multiplies the
sparse [out, in * kh * kw] filter matrix with it. Outputs equal the dense masked network's up to float summation
order (tested at rtol 1e-4, atol 1e-5). Other layers (BatchNorm, pooling, embeddings) run as they are. CPU: CSR
products go to torch's sparse kernels (MKL where torch has it); BSR needs block sizes dividing the weight matrix.
"""

from __future__ import annotations

import copy
import math
import warnings

import torch
from torch import nn
from torch.nn import functional as F

from ticketlab.errors import ConfigError

LAYOUTS = ("csr", "bsr")


def _to_sparse(matrix: torch.Tensor, layout: str, blocksize: int) -> torch.Tensor:
    """CSR / BSR with int32 indices (half the index bytes of torch's default int64; MKL takes either)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        if layout == "csr":
            sparse = matrix.to_sparse_csr()
            return torch.sparse_csr_tensor(sparse.crow_indices().int(), sparse.col_indices().int(), sparse.values(),
                                           sparse.shape, check_invariants=False)
        if layout == "bsr":
            sparse = matrix.to_sparse_bsr((blocksize, blocksize))
            return torch.sparse_bsr_tensor(sparse.crow_indices().int(), sparse.col_indices().int(), sparse.values(),
                                           sparse.shape, check_invariants=False)
    raise ValueError(f"unknown sparse layout {layout!r}; allowed: {', '.join(LAYOUTS)}")


def bsr_block_sizes(model: nn.Module) -> list[int]:
    """The BSR block sizes that tile every Linear / Conv2d weight matrix of `model` (the divisors of the greatest
    common divisor of their rows and columns)."""
    common = 0
    for shape in _matrix_shapes(model).values():
        common = math.gcd(common, *shape)
    return [size for size in range(1, common + 1) if common % size == 0]


def check_bsr_blocksize(model: nn.Module, blocksize: int) -> None:
    """ConfigError unless square `blocksize` blocks tile every Linear / Conv2d weight matrix of `model`."""
    for name, (rows, columns) in _matrix_shapes(model).items():
        if rows % blocksize or columns % blocksize:
            allowed = ", ".join(map(str, bsr_block_sizes(model)))
            raise ConfigError(f"--blocksize {blocksize} does not divide the {rows}x{columns} weight matrix of {name} "
                              f"(bsr stores square blocks tiling every Linear/Conv2d matrix); allowed: {allowed}")


def _matrix_shapes(model: nn.Module) -> dict[str, tuple[int, int]]:
    """name -> (rows, columns) of the matrix each Linear / Conv2d multiplies by ([out, in * kh * kw])."""
    return {name: (module.weight.shape[0], module.weight[0].numel()) for name, module in model.named_modules()
            if isinstance(module, (nn.Linear, nn.Conv2d))}


class SparseLinear(nn.Module):
    """A Linear whose weight is a sparse matrix [out, in]."""

    def __init__(self, linear: nn.Linear, layout: str = "csr", blocksize: int = 4):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.register_buffer("weight", _to_sparse(linear.weight.detach().clone(), layout, blocksize))
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().clone())

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        flat = inputs.reshape(-1, self.in_features)
        output = torch.sparse.mm(self.weight, flat.t()).t()  # [N, out]
        if self.bias is not None:
            output = output + self.bias
        return output.reshape(*inputs.shape[:-1], self.out_features)


class SparseConv2d(nn.Module):
    """A Conv2d (groups 1, zero padding) whose filters are a sparse [out, in * kh * kw] matrix, applied to the
    unfolded input."""

    def __init__(self, conv: nn.Conv2d, layout: str = "csr", blocksize: int = 4):
        super().__init__()
        if conv.groups != 1 or conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            raise ValueError("sparse export supports Conv2d with groups 1 and numeric zero padding")
        self.out_channels, self.kernel_size = conv.out_channels, conv.kernel_size
        self.stride, self.padding, self.dilation = conv.stride, conv.padding, conv.dilation
        matrix = conv.weight.detach().reshape(conv.out_channels, -1).clone()
        self.register_buffer("weight", _to_sparse(matrix, layout, blocksize))
        self.register_buffer("bias", None if conv.bias is None else conv.bias.detach().clone())

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = inputs.shape
        columns = F.unfold(inputs, self.kernel_size, dilation=self.dilation, padding=self.padding,
                           stride=self.stride)  # [N, in*kh*kw, L]
        out_h = (height + 2 * self.padding[0] - self.dilation[0] * (self.kernel_size[0] - 1) - 1) // self.stride[0] + 1
        out_w = (width + 2 * self.padding[1] - self.dilation[1] * (self.kernel_size[1] - 1) - 1) // self.stride[1] + 1
        stacked = columns.transpose(0, 1).reshape(columns.shape[1], -1)  # [in*kh*kw, N*L]
        output = torch.sparse.mm(self.weight, stacked)  # [out, N*L]
        output = output.reshape(self.out_channels, batch, out_h * out_w).transpose(0, 1)
        if self.bias is not None:
            output = output + self.bias[None, :, None]
        return output.reshape(batch, self.out_channels, out_h, out_w)


def sparse_model(model: nn.Module, layout: str = "csr", blocksize: int = 4) -> nn.Module:
    """An inference copy of `model` (eval mode) with every Linear and Conv2d replaced by its sparse form."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown sparse layout {layout!r}; allowed: {', '.join(LAYOUTS)}")
    result = copy.deepcopy(model).eval()
    replacements = [(name, module) for name, module in result.named_modules()
                    if isinstance(module, (nn.Linear, nn.Conv2d))]
    for name, module in replacements:
        sparse = (SparseLinear if isinstance(module, nn.Linear) else SparseConv2d)(module, layout, blocksize)
        parent_name, _, child = name.rpartition(".")
        setattr(result.get_submodule(parent_name) if parent_name else result, child, sparse)
    return result


def sparse_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """A sparse model's tensors for a safetensors file: each sparse weight as its CSR parts
    (`NAME.crow_indices`, `NAME.col_indices`, `NAME.values`, `NAME.shape`), everything else as it is."""
    tensors = {}
    for name, value in model.state_dict().items():
        if value is None:
            continue
        if value.layout == torch.sparse_csr:
            tensors[f"{name}.crow_indices"] = value.crow_indices().contiguous()
            tensors[f"{name}.col_indices"] = value.col_indices().contiguous()
            tensors[f"{name}.values"] = value.values().contiguous()
            tensors[f"{name}.shape"] = torch.tensor(value.shape)
        elif value.layout == torch.sparse_bsr:
            tensors[f"{name}.bsr_crow_indices"] = value.crow_indices().contiguous()
            tensors[f"{name}.bsr_col_indices"] = value.col_indices().contiguous()
            tensors[f"{name}.bsr_values"] = value.values().contiguous()
            tensors[f"{name}.shape"] = torch.tensor(value.shape)
        else:
            tensors[name] = value.contiguous()
    return tensors


def dense_state_from_sparse(tensors: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """The dense state dict of `model` from `sparse_tensors` output (sparse weights become dense again)."""
    state = {}
    for name, template in model.state_dict().items():
        if name in tensors:
            state[name] = tensors[name]
        elif f"{name}.values" in tensors:
            shape = tuple(tensors[f"{name}.shape"].tolist())
            matrix = torch.sparse_csr_tensor(tensors[f"{name}.crow_indices"], tensors[f"{name}.col_indices"],
                                             tensors[f"{name}.values"], shape, check_invariants=True)
            state[name] = matrix.to_dense().reshape(template.shape)
        elif f"{name}.bsr_values" in tensors:
            shape = tuple(tensors[f"{name}.shape"].tolist())
            matrix = torch.sparse_bsr_tensor(tensors[f"{name}.bsr_crow_indices"], tensors[f"{name}.bsr_col_indices"],
                                             tensors[f"{name}.bsr_values"], shape, check_invariants=True)
            state[name] = matrix.to_dense().reshape(template.shape)
        else:
            raise KeyError(f"sparse export lacks tensor {name}")
    return state
