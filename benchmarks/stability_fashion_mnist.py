"""Stability benchmark on Fashion-MNIST: LeNet-300-100's instability at k = 0, and barrier vs rewind step for a
BatchNorm network (dense and an IMP subnetwork).

Reproduce (one CPU thread, about 8 minutes on an idle core):

    python benchmarks/stability_fashion_mnist.py --steps 2000 --threads 1

1. LeNet-300-100 (the paper's protocol: Adam 1.2e-3, batch 60; shortened to --steps iterations): the dense run,
   then two copies trained from its initialization (k = 0) with different data orders; the error barrier on
   the linear path between them (30 points, whole train and test sets).
2. LeNet-300-100 with BatchNorm after each hidden layer, trained with SGD (lr 0.1, momentum 0.9, batch 60), the
   IMP run to level --bn-level, then for each k in --bn-rewind two copies of the dense network and of the IMP
   subnetwork trained from the dense run's weights at step k; the barrier with BatchNorm statistics recomputed
   at every point. The model is defined here: ticketlab.models has no BatchNorm network for MNIST-sized inputs.

Runs go to --root (default runs/benchmarks); re-running reuses every trained network and path evaluation.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from ticketlab.analysis.stability import StabilitySettings, stability_analysis
from ticketlab.api import find_tickets
from ticketlab.presets import preset


class BatchNormLeNet(nn.Module):
    """LeNet-300-100 with BatchNorm1d between each hidden Linear layer and its ReLU."""

    def __init__(self, input_size: int = 784, hidden: tuple[int, ...] = (300, 100), num_classes: int = 10):
        super().__init__()
        widths = [input_size, *hidden]
        blocks: list[nn.Module] = [nn.Flatten()]
        for width_in, width_out in zip(widths[:-1], widths[1:]):
            blocks += [nn.Linear(width_in, width_out), nn.BatchNorm1d(width_out), nn.ReLU()]
        blocks.append(nn.Linear(widths[-1], num_classes))
        self.layers = nn.Sequential(*blocks)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.layers(inputs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=2000, help="training iterations of every network")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--root", default="runs/benchmarks")
    parser.add_argument("--points", type=int, default=30)
    parser.add_argument("--lenet-rewind", default="0it", help="rewind steps for LeNet-300-100")
    parser.add_argument("--bn-rewind", default="0it,50it,200it,1000it", help="rewind steps for the BatchNorm net")
    parser.add_argument("--bn-level", type=int, default=2, help="IMP level of the BatchNorm subnetwork")
    parser.add_argument("--eval-examples", type=int, default=10000,
                        help="BatchNorm net: train error and BatchNorm statistics from this many training examples")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.time()

    lenet = preset("lenet_fashion_mnist").replace(**{
        "train.steps": f"{args.steps}it", "train.eval_every": "500it", "prune.levels": 0, "trials": 1,
        "variants": ["iterative_reset"],
    })
    lenet_run = find_tickets(lenet, root=args.root, workers=1, progress=False, report=False).run_dir
    lenet_result = stability_analysis(
        lenet_run, StabilitySettings(rewind_steps=tuple(args.lenet_rewind.split(",")), points=args.points),
        progress=False,
    )
    lenet_time = time.time() - started

    batchnorm = lenet.replace(**{
        "train.optimizer": "sgd", "train.lr": 0.1, "train.momentum": 0.9, "prune.levels": args.bn_level,
    })
    bn_run = find_tickets(batchnorm, root=args.root, model=BatchNormLeNet(), workers=1, progress=False,
                          report=False).run_dir
    bn_result = stability_analysis(
        bn_run,
        StabilitySettings(rewind_steps=tuple(args.bn_rewind.split(",")), levels=(0, args.bn_level),
                          points=args.points, train_examples=args.eval_examples,
                          batchnorm_examples=args.eval_examples),
        model=BatchNormLeNet(), progress=False,
    )
    total_time = time.time() - started

    print(f"Fashion-MNIST, {args.steps} iterations per network, {args.points} points per path, "
          f"{args.threads} thread(s)\n")
    print("LeNet-300-100 (Adam 1.2e-3, batch 60), dense network:")
    _table(lenet_result.rows)
    print(f"\nLeNet-300-100 + BatchNorm (SGD 0.1, momentum 0.9, batch 60); train error and BatchNorm statistics "
          f"from {args.eval_examples} training examples, test error on all 10,000:")
    _table(bn_result.rows)
    print("\nbarrier = max error on the path - mean of the two end points' errors (percentage points); "
          "distance = ||a - b|| / mean(||a||, ||b||) over the masked prunable weights")
    print(f"\ntime: LeNet part {lenet_time:.0f} s, total {total_time:.0f} s")
    for name, result in (("LeNet-300-100", lenet_result), ("BatchNorm LeNet", bn_result)):
        for kind, path in result.files.items():
            print(f"{name} {kind}: {path}")
    print(f"\nreproduce: python benchmarks/stability_fashion_mnist.py --steps {args.steps} --threads {args.threads} "
          f"--lenet-rewind {args.lenet_rewind} --bn-rewind {args.bn_rewind} --bn-level {args.bn_level} "
          f"--eval-examples {args.eval_examples} --points {args.points}")


def _table(rows: list[dict]) -> None:
    print(f"  {'network':<26} {'k':>6} {'test err A/B %':>15} {'train barrier':>13} {'test barrier':>12} "
          f"{'order dist':>10} {'prune dist':>10}")
    for row in rows:
        percent = row["weights_remaining_percent"]
        network = "dense" if row["level"] == 0 else f"IMP level {row['level']} ({percent:.1f}%)"
        pruning = row.get("pruning_relative")
        print(f"  {network:<26} {row['rewind_step']:>6} "
              f"{100 * row['test_error_a']:>7.2f}/{100 * row['test_error_b']:<7.2f} "
              f"{100 * row['train_barrier']:>13.2f} {100 * row['test_barrier']:>12.2f} "
              f"{row['data_order_relative']:>10.4f} {'-' if pruning is None else f'{pruning:.4f}':>10}")


if __name__ == "__main__":
    main()
