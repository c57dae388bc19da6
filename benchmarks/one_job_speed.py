"""One LeNet-300-100 job alone: `train_model` (the one-job path) against the fp32 matmul peak, same run.

Two settings, each for 2 epochs of Fashion-MNIST-sized random data (55,000 / 5,000 / 10,000 examples; speed does
not depend on the values), evaluation every 100 iterations, 50% random masks:
- Adam, batch 60 (the lottery-ticket protocol);
- SGD with momentum, batch 128.
At each thread count asked for, the peak is measured first, then a plain eager loop (torch.optim defaults, no
evaluation) and `train_model`. Achieved FLOP/s counts training (6 x weights x examples) and the protocol's
evaluation (2 x weights per example: the validation set at every evaluation point, the test set twice, the
training set at the end), over the whole wall time of `train_model`.

Reproduce:  python benchmarks/one_job_speed.py --threads 2,1
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from torch.nn import functional as F

from flops import evaluation_flops, matmul_peak, training_flops, weight_count
from ticketlab.config import TrainConfig
from ticketlab.data.splits import DataSplits
from ticketlab.models import initialize
from ticketlab.models.mlp import MLP
from ticketlab.pruning import keep_top, prunable_weights, random_scores
from ticketlab.training.loop import iterations_per_epoch, train_model

SIZES = (55000, 5000, 10000)
SETTINGS = {
    "adam, batch 60": dict(optimizer="adam", lr=1.2e-3, batch_size=60),
    "sgd, batch 128": dict(optimizer="sgd", lr=0.05, momentum=0.9, batch_size=128),
}
EVAL_EVERY = 100


def synthetic_data(seed: int = 0) -> DataSplits:
    generator = torch.Generator().manual_seed(seed)

    def split(count):
        return torch.rand(count, 1, 28, 28, generator=generator), torch.randint(0, 10, (count,), generator=generator)

    return DataSplits(*split(SIZES[0]), *split(SIZES[1]), *split(SIZES[2]), num_classes=10)


def make_model(seed: int = 0):
    return initialize(MLP(784, (300, 100), 10), "glorot_normal", seed)


def half_masks(model) -> dict[str, torch.Tensor]:
    weights = prunable_weights(model)
    return keep_top(random_scores(weights, seed=0), {name: w.numel() // 2 for name, w in weights.items()})


def plain_loop_seconds(data: DataSplits, setting: dict, steps: int) -> float:
    """Wall time of `steps` steps of the plainest eager loop (default optimizer, advanced indexing, no masks)."""
    model = make_model()
    optimizer = (torch.optim.Adam(model.parameters(), lr=setting["lr"]) if setting["optimizer"] == "adam" else
                 torch.optim.SGD(model.parameters(), lr=setting["lr"], momentum=setting["momentum"]))
    batch = setting["batch_size"]
    order = torch.randperm(len(data.x_train), generator=torch.Generator().manual_seed(0))
    start = time.perf_counter()
    for step in range(steps):
        indices = order[step * batch % (len(order) - batch):][:batch]
        loss = F.cross_entropy(model(data.x_train[indices].flatten(1)), data.y_train[indices])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", default="2,1", help="comma-separated thread counts")
    parser.add_argument("--epochs", type=float, default=2.0)
    args = parser.parse_args()
    print(f"command: python benchmarks/one_job_speed.py --threads {args.threads} --epochs {args.epochs}")
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs visible, load average at start {os.getloadavg()[0]:.1f}")
    data = synthetic_data()
    weights = weight_count(make_model())
    print(f"{'threads':>7} {'setting':>15} {'peak GF/s':>10} {'plain it/s':>11} {'train_model it/s':>17} "
          f"{'GFLOP/s':>8} {'% peak':>7} {'eval share':>11}")
    for threads in (int(text) for text in args.threads.split(",")):
        torch.set_num_threads(threads)
        for label, setting in SETTINGS.items():
            batch = setting["batch_size"]
            steps = round(args.epochs * iterations_per_epoch(SIZES[0], batch))
            config = TrainConfig(steps=f"{steps}it", eval_every=f"{EVAL_EVERY}it", **setting)
            peak = matmul_peak(threads)
            model = make_model()
            train_model(model, data, TrainConfig(steps="20it", eval_every="10it", **setting), masks=half_masks(model),
                        data_seed=0)  # first-call allocations and kernel selection
            plain = plain_loop_seconds(data, setting, min(steps, 300))
            model = make_model()
            start = time.perf_counter()
            train_model(model, data, config, masks=half_masks(model), data_seed=0)
            wall = time.perf_counter() - start
            evaluations = steps // EVAL_EVERY + (steps % EVAL_EVERY > 0)
            eval_flops = evaluation_flops(weights, evaluations * SIZES[1] + 2 * SIZES[2] + SIZES[0])
            flops = training_flops(weights, steps * batch) + eval_flops
            print(f"{threads:>7} {label:>15} {peak / 1e9:>10.1f} {min(steps, 300) / plain:>11.0f} "
                  f"{steps / wall:>17.0f} "
                  f"{flops / wall / 1e9:>8.1f} {100 * flops / wall / peak:>6.0f}% {100 * eval_flops / flops:>10.1f}%")
    print("(eval share: of the FLOPs counted; train_model it/s is over its whole wall time, evaluation included)")
    print(f"load average at end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
