"""A population's masked Linear layer on dense and on sparse kernels: forward + input gradient + weight gradient of
K stacked members, each on its own batch, as `ticketlab.training.population` trains them.

- dense: the population's own kernels (`baddbmm` forward, two `bmm` for the gradients), weights [K, out, in].
- per member: each member's layer on `ticketlab.training.sparse_linear`'s kernels (CSR x dense forward and input
  gradient, `sampled_addmm` weight gradient), K calls a step.
- block-diagonal: all K members at once as one [K*out, K*in] block-diagonal CSR product, as populations on
  `train.kernels sparse` train (`ticketlab.training.population.sparse_stack`). This amortizes the fixed cost per
  sparse call (a few hundred microseconds on this CPU, see benchmarks/sparse_kernels.py) over the K members.

The three are measured in the same run, interleaved round by round. The best of the rounds counts, on this
process's CPU clock, so other work on a shared machine disturbs all three alike. Masks are random at each density,
the same for every member. Each sparse result is checked against the dense one before timing.

Reproduce:  OMP_NUM_THREADS=1 python benchmarks/population_sparse_product.py
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `python benchmarks/THIS.py` from anywhere
from benchmarks.sparse_kernels import best_times  # noqa: E402
from ticketlab.training.population.sparse_stack import BlockDiagonalLayout, batch_major, feature_major  # noqa: E402
from ticketlab.training.sparse_linear import MaskLayout  # noqa: E402

SHAPES = {"lenet 784->300": (300, 784), "lenet 300->100": (100, 300), "conv2 16384->256": (256, 16384)}
DENSITIES = (1.0, 0.41, 0.21, 0.086, 0.036)


def step_functions(shape: tuple[int, int], density: float, count: int, batch: int, seed: int = 0) -> dict:
    """name -> one forward + input gradient + weight gradient of the stacked layer; the outputs for the check."""
    generator = torch.Generator().manual_seed(seed)
    out_features, in_features = shape
    mask = (torch.rand(shape, generator=generator) < density).float()
    masks = mask.expand(count, *shape).contiguous()
    weights = torch.randn(count, *shape, generator=generator) * masks
    bias = torch.randn(count, out_features, generator=generator)
    inputs = torch.randn(count, batch, in_features, generator=generator)
    upstream = torch.randn(count, batch, out_features, generator=generator)
    grad_weights = torch.empty_like(weights)
    single = MaskLayout(mask)
    block = BlockDiagonalLayout(masks)

    def dense():
        outputs = torch.baddbmm(bias.unsqueeze(1), inputs, weights.transpose(1, 2))
        torch.bmm(upstream.transpose(1, 2), inputs, out=grad_weights)
        grad_weights.mul_(masks)  # the exact-mask step zeroes the pruned gradient
        return outputs, torch.bmm(upstream, weights), grad_weights

    def per_member():
        outputs, grad_inputs, grads = [], [], torch.zeros(count, out_features * in_features)
        for member in range(count):
            x_t, g_t = inputs[member].t().contiguous(), upstream[member].t().contiguous()
            outputs.append(torch.addmm(bias[member].unsqueeze(1), single.weight_csr(weights[member]), x_t).t())
            grad_inputs.append(torch.mm(single.weight_t_csr(weights[member]), g_t).t())
            values = torch.sparse.sampled_addmm(single.pattern, g_t, x_t.t(), beta=0.0).values()
            grads[member].index_copy_(0, single.kept, values)
        return torch.stack(outputs), torch.stack(grad_inputs), grads.view_as(weights)

    def block_diagonal():  # from and back to the dense kernels' layout, as a layer between dense ones
        grads, stacked_inputs, stacked_upstream = torch.empty_like(weights), feature_major(inputs), feature_major(upstream)
        block.weight_gradient(stacked_upstream, stacked_inputs, grads)
        return (batch_major(block.forward(weights, bias, stacked_inputs), count),
                batch_major(block.input_gradient(weights, stacked_upstream), count), grads)

    return {"dense": dense, "per member": per_member, "block-diagonal": block_diagonal}


def check(functions: dict) -> float:
    """The largest |sparse - dense| / (|dense| + 1) over the outputs and both gradients."""
    reference = functions["dense"]()
    worst = 0.0
    for name in ("per member", "block-diagonal"):
        for got, expected in zip(functions[name](), reference):
            worst = max(worst, float(((got - expected).abs() / (expected.abs() + 1)).max()))
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--members", type=int, default=16)
    parser.add_argument("--batch", type=int, default=60)
    parser.add_argument("--shapes", default=",".join(SHAPES), help="comma-separated, of: " + ", ".join(SHAPES))
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
    torch.set_num_threads(1)
    print(f"command: OMP_NUM_THREADS=1 python benchmarks/population_sparse_product.py --members {args.members} "
          f"--batch {args.batch} --rounds {args.rounds} --shapes '{args.shapes}'")
    print(f"torch {torch.__version__}, 1 thread, CPU clock, load average at start {os.getloadavg()[0]:.1f}")
    print(f"{'layer':>17} {'K':>3} {'density':>8} {'dense ms':>9} {'per member ms':>14} {'block-diag ms':>14} "
          f"{'speedup (block-diag)':>21} {'max rel. error':>15}")
    for label in args.shapes.split(","):
        shape = SHAPES[label]
        count = args.members if shape[1] < 10_000 else max(1, args.members // 4)  # Conv-2's wide layer: memory
        reps = max(3, round(3e8 / (count * shape[0] * shape[1] * args.batch)))
        for density in DENSITIES:
            functions = step_functions(shape, density, count, args.batch)
            error = check(functions)
            times = best_times(functions, reps, args.rounds, time.process_time)
            print(f"{label:>17} {count:>3} {density:>8.1%} {1e3 * times['dense']:>9.2f} "
                  f"{1e3 * times['per member']:>14.2f} {1e3 * times['block-diagonal']:>14.2f} "
                  f"{times['dense'] / times['block-diagonal']:>20.2f}x {error:>15.1e}", flush=True)
    print(f"load average at end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
