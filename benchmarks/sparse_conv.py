"""Does sparse convolution win anywhere on this CPU? One masked Conv2d layer, forward + input gradient + weight
gradient, dense against sparse, at the layer shapes of Conv-2/4/6 and ResNet-20 (batch 60).

Dense: `F.conv2d` on the masked weight and its autograd backward (what training does today). Sparse: the
convolution as a product over its patches (`F.unfold`, im2col), [N*L, C*k*k] against the masked weight
[out, C*k*k], on ticketlab's sparse Linear kernels (`ticketlab.training.sparse_linear`: CSR x dense for the
forward and the input gradient, `torch.sparse.sampled_addmm` for the weight gradient at the kept positions), then
`F.fold` back for the input gradient. Also the dense im2col product (`unfold` + dense `F.linear`), which tells how
much of the sparse path's cost is the patch copy rather than the arithmetic. Timed as in
`benchmarks/sparse_kernels.py`: best of interleaved rounds, this process's CPU time (`--clock cpu`), random masks
of uniform density.

Reproduce:  OMP_NUM_THREADS=1 python benchmarks/sparse_conv.py --threads 1
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

import torch
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `python benchmarks/sparse_conv.py` from anywhere
from benchmarks.sparse_kernels import best_times, crossover, print_crossovers  # noqa: E402
from ticketlab.training.sparse_linear import MaskLayout, sparse_linear  # noqa: E402

# label -> (in channels, out channels, image side, kernel): the 3x3 layers of the networks named
SHAPES = {
    "conv2 1->64 @28": (1, 64, 28, 3), "conv2 64->64 @28": (64, 64, 28, 3),
    "conv6 128->256 @7": (128, 256, 7, 3), "conv6 256->256 @7": (256, 256, 7, 3),
    "resnet20 16->16 @32": (16, 16, 32, 3), "resnet20 64->64 @8": (64, 64, 8, 3),
}
DENSITIES = (1.0, 0.41, 0.21, 0.086, 0.036)
QUICK_SHAPES = ("resnet20 64->64 @8",)


def sparse_conv(inputs: torch.Tensor, weight: torch.Tensor, layout: MaskLayout, kernel: int) -> torch.Tensor:
    """Conv2d (stride 1, same padding, no bias) of `inputs` [N, C, H, W] as a sparse product over its patches."""
    batch, _, height, width = inputs.shape
    patches = F.unfold(inputs, kernel, padding=kernel // 2)  # [N, C*k*k, H*W]
    rows = patches.transpose(1, 2).reshape(batch * height * width, -1)
    flat_weight = weight.reshape(weight.shape[0], -1)
    outputs = sparse_linear(rows, flat_weight, None, layout)  # [N*H*W, out]
    return outputs.reshape(batch, height * width, -1).transpose(1, 2).reshape(batch, -1, height, width)


def step_timers(shape: tuple[int, int, int, int], density: float, batch: int, seed: int = 0) -> dict:
    """name -> a function running one forward + backward of the layer at `density` on one path."""
    generator = torch.Generator().manual_seed(seed)
    channels_in, channels_out, side, kernel = shape
    weight_shape = (channels_out, channels_in, kernel, kernel)
    mask = (torch.rand(weight_shape, generator=generator) < density).float()
    weight = (torch.randn(weight_shape, generator=generator) * mask).requires_grad_()
    inputs = torch.randn(batch, channels_in, side, side, generator=generator).requires_grad_()
    grad_outputs = torch.randn(batch, channels_out, side, side, generator=generator)
    layout = MaskLayout(mask.reshape(channels_out, -1))

    def dense():
        F.conv2d(inputs, weight, padding=kernel // 2).backward(grad_outputs)

    def sparse():
        sparse_conv(inputs, weight, layout, kernel).backward(grad_outputs)

    def im2col():
        patches = F.unfold(inputs, kernel, padding=kernel // 2).transpose(1, 2)
        outputs = F.linear(patches, weight.reshape(channels_out, -1))
        outputs.transpose(1, 2).reshape(batch, channels_out, side, side).backward(grad_outputs)

    return {"dense": dense, "sparse": sparse, "im2col": im2col}


def agreement(shape: tuple[int, int, int, int], density: float, batch: int = 4) -> float:
    """The largest difference between the sparse path's output and input gradient and F.conv2d's, relative to the
    largest entry (the same sums in another order)."""
    generator = torch.Generator().manual_seed(1)
    channels_in, channels_out, side, kernel = shape
    mask = (torch.rand((channels_out, channels_in, kernel, kernel), generator=generator) < density).float()
    weight = torch.randn(mask.shape, generator=generator) * mask
    inputs = torch.randn(batch, channels_in, side, side, generator=generator)
    results = []
    for path in ("dense", "sparse"):
        leaf = inputs.clone().requires_grad_()
        if path == "dense":
            outputs = F.conv2d(leaf, weight, padding=kernel // 2)
        else:
            outputs = sparse_conv(leaf, weight, MaskLayout(mask.reshape(channels_out, -1)), kernel)
        outputs.sum().backward()
        results.append((outputs.detach(), leaf.grad))
    (dense_out, dense_grad), (sparse_out, sparse_grad) = results
    return max(float((sparse_out - dense_out).abs().max() / dense_out.abs().max()),
               float((sparse_grad - dense_grad).abs().max() / dense_grad.abs().max()))


def main(argv=None) -> list[tuple[str, float, float, float]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=60)
    parser.add_argument("--shapes", default=",".join(SHAPES), help="comma-separated, of: " + ", ".join(SHAPES))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    parser.add_argument("--quick", action="store_true", help="one small layer, batch 8, two densities (tests)")
    args = parser.parse_args(argv)
    shapes, densities, batch, rounds = args.shapes.split(","), DENSITIES, args.batch, args.rounds
    if args.quick:
        shapes, densities, batch, rounds = list(QUICK_SHAPES), (1.0, 0.036), 8, 1
    unknown = [label for label in shapes if label not in SHAPES]
    if unknown:
        parser.error(f"unknown --shapes {', '.join(unknown)}; allowed: {', '.join(SHAPES)}")
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
    torch.set_num_threads(args.threads)
    print(f"command: OMP_NUM_THREADS={args.threads} python benchmarks/sparse_conv.py --threads {args.threads} "
          f"--batch {batch} --rounds {rounds} --clock {args.clock}" + (" --quick" if args.quick else ""))
    print(f"torch {torch.__version__}, {args.threads} thread(s), {os.cpu_count()} CPUs visible, "
          f"load average at start {os.getloadavg()[0]:.1f}")
    print(f"{'layer':>20} {'density':>8} {'conv2d ms':>10} {'sparse ms':>10} {'speedup':>8} {'im2col ms':>10} "
          f"{'agreement':>10}")
    rows, summary = [], []
    for label in shapes:
        shape = SHAPES[label]
        macs = shape[0] * shape[1] * shape[2] ** 2 * shape[3] ** 2 * batch
        reps = max(2, round(3e8 / macs)) if not args.quick else 1
        points = []
        for density in densities:
            times = best_times(step_timers(shape, density, batch), reps, rounds, clock)
            ratio = times["sparse"] / times["dense"]
            error = agreement(shape, density)
            points.append((density, ratio))
            rows.append((label, density, 1 / ratio, error))
            print(f"{label:>20} {density:>8.1%} {1e3 * times['dense']:>10.2f} {1e3 * times['sparse']:>10.2f} "
                  f"{1 / ratio:>7.2f}x {1e3 * times['im2col']:>10.2f} {error:>10.1e}", flush=True)
        summary.append((label, crossover(points), 1 / points[-1][1]))
    print_crossovers(summary, densities[-1], 20)
    return rows


if __name__ == "__main__":
    main()
