"""Sparse against dense kernels for one masked Linear layer: forward + input gradient + weight gradient.

Dense: `F.linear` on the masked weight and its autograd backward (the full weight gradient, which the exact-mask
step then zeroes where pruned). Sparse: `ticketlab.training.sparse_linear` (CSR x dense for the forward and the
input gradient, `torch.sparse.sampled_addmm` for the weight gradient at the kept positions, the kept values
gathered from the dense weight and the gradient scattered back into a dense tensor). Both measured in the same run,
interleaved round by round (the best of the rounds counts, so a burst of other work on a shared machine hurts
both alike; `--clock cpu`, the default, times this process's CPU seconds, which other processes on a shared
machine disturb far less than the wall clock; `--clock wall` for a quiet machine), on random masks (uniform density) at the layer shapes of LeNet-300-100 and Conv-2's dense layers.
The crossover is the density below which sparse wins, interpolated (in log density) between measured points.

Reproduce:  OMP_NUM_THREADS=1 python benchmarks/sparse_kernels.py --threads 1
"""

from __future__ import annotations

import argparse
import math
import os
import time
import warnings

import torch
from torch.nn import functional as F

from ticketlab.training.sparse_linear import MaskLayout, sparse_linear

SHAPES = {"lenet 784->300": (300, 784), "lenet 300->100": (100, 300), "lenet 100->10": (10, 100),
          "conv2 16384->256": (256, 16384), "conv2 256->256": (256, 256), "conv2 256->10": (10, 256)}
DENSITIES = (1.0, 0.64, 0.41, 0.21, 0.137, 0.086, 0.055, 0.036)


def step_timers(shape: tuple[int, int], density: float, batch: int, seed: int = 0) -> dict:
    """name -> a function running one forward + backward (or one part of it) of the layer at `density`."""
    generator = torch.Generator().manual_seed(seed)
    out_features, in_features = shape
    mask = (torch.rand(shape, generator=generator) < density).float()
    weight = (torch.randn(shape, generator=generator) * mask).requires_grad_()
    bias = torch.zeros(out_features, requires_grad=True)
    inputs = torch.randn(batch, in_features, generator=generator).requires_grad_()
    grad_outputs = torch.randn(batch, out_features, generator=generator)
    layout = MaskLayout(mask)

    def dense():
        F.linear(inputs, weight, bias).backward(grad_outputs)

    def sparse():
        sparse_linear(inputs, weight, bias, layout).backward(grad_outputs)

    def forward():
        with torch.no_grad():
            sparse_linear(inputs, weight, bias, layout)

    def input_grad():
        torch.mm(layout.weight_t_csr(weight.detach()), grad_outputs.t()).t()

    def weight_grad():
        values = torch.sparse.sampled_addmm(layout.pattern, grad_outputs.t().contiguous(), inputs.detach(),
                                            beta=0.0).values()
        torch.zeros(weight.numel()).index_copy_(0, layout.kept, values)

    return {"dense": dense, "sparse": sparse, "fwd": forward, "grad_x": input_grad, "grad_w": weight_grad}


def best_times(timers: dict, reps: int, rounds: int, clock=time.process_time) -> dict[str, float]:
    """name -> best seconds per call over `rounds` interleaved rounds of `reps` calls."""
    best = {name: math.inf for name in timers}
    for function in timers.values():
        function()
    for _ in range(rounds):
        for name, function in timers.items():
            start = clock()
            for _ in range(reps):
                function()
            best[name] = min(best[name], (clock() - start) / reps)
    return best


def crossover(points: list[tuple[float, float]]) -> str:
    """The density where sparse/dense time crosses 1, from (density, ratio) pairs sorted by falling density."""
    if all(ratio < 1 for _, ratio in points):
        return f">= {points[0][0]:.0%} (sparse wins everywhere measured)"
    for (high, high_ratio), (low, low_ratio) in zip(points, points[1:]):
        if high_ratio >= 1 > low_ratio:
            share = math.log(high_ratio) / (math.log(high_ratio) - math.log(low_ratio))
            return f"{math.exp(math.log(high) + share * (math.log(low) - math.log(high))):.1%}"
    return "none (sparse never wins)" if all(ratio >= 1 for _, ratio in points) else "mixed: see the table"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=60)
    parser.add_argument("--shapes", default=",".join(SHAPES), help="comma-separated, of: " + ", ".join(SHAPES))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu",
                        help="cpu: this process's CPU time (shared machines); wall: elapsed time")
    args = parser.parse_args()
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
    torch.set_num_threads(args.threads)
    print(f"command: python benchmarks/sparse_kernels.py --threads {args.threads} --batch {args.batch} "
          f"--rounds {args.rounds} --clock {args.clock} --shapes '{args.shapes}'")
    print(f"torch {torch.__version__}, {args.threads} thread(s), {os.cpu_count()} CPUs visible, "
          f"load average at start {os.getloadavg()[0]:.1f}")
    print(f"{'layer':>17} {'density':>8} {'dense us':>9} {'sparse us':>10} {'speedup':>8} "
          f"{'fwd us':>7} {'grad_x us':>10} {'grad_w us':>10}")
    summary = []
    for label in args.shapes.split(","):
        shape = SHAPES[label]
        reps = max(5, round(6e7 / (shape[0] * shape[1] * args.batch)))
        points = []
        for density in DENSITIES:
            times = best_times(step_timers(shape, density, args.batch), reps, args.rounds, clock)
            ratio = times["sparse"] / times["dense"]
            points.append((density, ratio))
            print(f"{label:>17} {density:>8.1%} {1e6 * times['dense']:>9.0f} {1e6 * times['sparse']:>10.0f} "
                  f"{1 / ratio:>7.2f}x {1e6 * times['fwd']:>7.0f} {1e6 * times['grad_x']:>10.0f} "
                  f"{1e6 * times['grad_w']:>10.0f}", flush=True)
        summary.append((label, crossover(points), 1 / points[-1][1]))
    print_crossovers(summary, DENSITIES[-1], 17)


def print_crossovers(summary: list[tuple[str, str, float]], lowest: float, width: int) -> None:
    """The closing lines: each layer's crossover and its speed-up at the lowest density, and the load."""
    print("\ncrossover (sparse faster below this density), and the speedup at the lowest density measured:")
    for label, where, speedup in summary:
        print(f"  {label:>{width}}: {where}; {speedup:.2f}x at {lowest:.1%}")
    print(f"load average at end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
