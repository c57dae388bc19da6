"""One job alone: `train_model` (the one-job path) against the fp32 matmul peak, measured in the same run.

Settings (random data of each dataset's shape; speed does not depend on the values), evaluation every 100
iterations, 50% random masks:
- LeNet-300-100, Adam, batch 60 (the lottery-ticket protocol), 2 epochs of Fashion-MNIST's size;
- LeNet-300-100, SGD with momentum, batch 128, 2 epochs;
- Conv-2 (64-64 conv, 256-256-10), Adam, batch 60, 300 iterations on 5,000 CIFAR-sized images (a conv net on CPU).
At each thread count asked for, the peak is measured first, then a plain eager loop (torch.optim defaults, no
masks, no evaluation) and `train_model`. Achieved FLOP/s counts training (6 x weights x examples; conv weights once
per output position, as `ticketlab cost` counts) and the protocol's evaluation (the validation set at every
evaluation point, the test set twice, the training set at the end), over the whole wall time of `train_model`.

Then, with `--kernels` (default dense,sparse,auto), the sparse path beside the dense one: `train_model` at each
`--remaining` percent of weights (uniform random masks, every layer at that density), `--kernel-steps` iterations
with the same evaluation, each kernel choice timed in the same run, one after another at each density (a warm-up
run first calibrates 'auto' and loads the kernels), timed in CPU seconds of this process (iterations per CPU
second: on a shared machine the wall clock mostly measures the neighbours). `--kernels none` skips it.

Reproduce:  python benchmarks/one_job_speed.py --threads 2,1
            python benchmarks/one_job_speed.py --threads 1 --settings none --kernel-settings lenet-adam-b60
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from torch.nn import functional as F

from flops import evaluation_flops, forward_flops, matmul_peak, training_flops
from ticketlab.config import TrainConfig
from ticketlab.data.splits import DataSplits
from ticketlab.models import build_model, initialize
from ticketlab.pruning import keep_top, prunable_weights, random_scores
from ticketlab.training.loop import iterations_per_epoch, train_model

MNIST_SIZES, CIFAR_SIZES = (55000, 5000, 10000), (5000, 1000, 1000)
SETTINGS = {
    "lenet-adam-b60": dict(model="lenet300_100", shape=(1, 28, 28), sizes=MNIST_SIZES, epochs=2.0,
                            train=dict(optimizer="adam", lr=1.2e-3, batch_size=60)),
    "lenet-sgd-b128": dict(model="lenet300_100", shape=(1, 28, 28), sizes=MNIST_SIZES, epochs=2.0,
                            train=dict(optimizer="sgd", lr=0.05, momentum=0.9, batch_size=128)),
    "conv2-adam-b60": dict(model="conv2", shape=(3, 32, 32), sizes=CIFAR_SIZES, steps=300,
                            train=dict(optimizer="adam", lr=2e-4, batch_size=60)),
}
EVAL_EVERY = 100


def synthetic_data(shape: tuple[int, ...], sizes: tuple[int, int, int], seed: int = 0) -> DataSplits:
    generator = torch.Generator().manual_seed(seed)

    def split(count):
        return torch.rand(count, *shape, generator=generator), torch.randint(0, 10, (count,), generator=generator)

    return DataSplits(*split(sizes[0]), *split(sizes[1]), *split(sizes[2]), num_classes=10)


def make_model(name: str, shape: tuple[int, ...], seed: int = 0):
    return initialize(build_model(name, shape, 10), "glorot_normal", seed)


def half_masks(model) -> dict[str, torch.Tensor]:
    weights = prunable_weights(model)
    return keep_top(random_scores(weights, seed=0), {name: w.numel() // 2 for name, w in weights.items()})


def plain_loop_seconds(model, data: DataSplits, setting: dict, steps: int) -> float:
    """Wall time of `steps` steps of the plainest eager loop (default optimizer, advanced indexing, no masks)."""
    train = setting["train"]
    optimizer = (torch.optim.Adam(model.parameters(), lr=train["lr"]) if train["optimizer"] == "adam" else
                 torch.optim.SGD(model.parameters(), lr=train["lr"], momentum=train["momentum"]))
    batch = train["batch_size"]
    order = torch.randperm(len(data.x_train), generator=torch.Generator().manual_seed(0))
    start = time.perf_counter()
    for step in range(steps):
        indices = order[step * batch % (len(order) - batch):][:batch]
        loss = F.cross_entropy(model(data.x_train[indices]), data.y_train[indices])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start


def density_masks(model, remaining: float) -> dict[str, torch.Tensor]:
    weights = prunable_weights(model)
    return keep_top(random_scores(weights, seed=0),
                    {name: max(1, round(w.numel() * remaining)) for name, w in weights.items()})


def kernel_table(threads: int, labels: list[str], remaining: list[float], kernels: list[str], steps: int) -> None:
    """Iterations/s of `train_model` per kernel choice at each remaining fraction, and the speed-up over dense."""
    torch.set_num_threads(threads)
    print(f"\nsparse kernels beside dense ({threads} thread(s), {steps} iterations, evaluation every {EVAL_EVERY}; "
          "it/s per CPU second of this process, which other work on a shared machine disturbs less than the wall "
          "clock):")
    print(f"{'setting':>16} {'remaining':>9} " + " ".join(f"{kernel + ' it/s':>12}" for kernel in kernels)
          + " " + " ".join(f"{kernel + '/dense':>13}" for kernel in kernels if kernel != "dense"))
    for label in labels:
        setting = SETTINGS[label]
        sizes, train = setting["sizes"], setting["train"]
        data = synthetic_data(setting["shape"], sizes)
        for fraction in remaining:
            rates = {}
            for kernel in kernels:
                config = TrainConfig(steps=f"{steps}it", eval_every=f"{EVAL_EVERY}it", kernels=kernel, **train)
                model = make_model(setting["model"], setting["shape"])
                train_model(model, data, TrainConfig(steps="3it", eval_every="3it", kernels=kernel, **train),
                            masks=density_masks(model, fraction), data_seed=0)  # warm-up (and auto's calibration)
                model = make_model(setting["model"], setting["shape"])
                masks = density_masks(model, fraction)
                start = time.process_time()
                train_model(model, data, config, masks=masks, data_seed=0)
                rates[kernel] = steps / (time.process_time() - start)
            print(f"{label:>16} {100 * fraction:>8.1f}% " + " ".join(f"{rates[k]:>12.0f}" for k in kernels) + " "
                  + " ".join(f"{rates[k] / rates['dense']:>12.2f}x" for k in kernels if k != "dense"), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", default="2,1", help="comma-separated thread counts")
    parser.add_argument("--settings", default=",".join(SETTINGS), help="comma-separated, of: " + ", ".join(SETTINGS))
    parser.add_argument("--kernels", default="dense,sparse,auto", help="train.kernels values to compare, or none")
    parser.add_argument("--kernel-settings", default="lenet-adam-b60,conv2-adam-b60", help="settings of that table")
    parser.add_argument("--remaining", default="100,41,21,8.6,3.6", help="percent of weights remaining")
    parser.add_argument("--kernel-steps", type=int, default=300)
    args = parser.parse_args()
    print(f"command: python benchmarks/one_job_speed.py --threads {args.threads} --settings '{args.settings}' "
          f"--kernels {args.kernels} --kernel-settings '{args.kernel_settings}' --remaining {args.remaining} "
          f"--kernel-steps {args.kernel_steps}")
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs visible, load average at start {os.getloadavg()[0]:.1f}")
    print(f"{'threads':>7} {'setting':>16} {'peak GF/s':>10} {'plain it/s':>11} {'train_model it/s':>17} "
          f"{'GFLOP/s':>8} {'% peak':>7} {'eval share':>11}")
    for threads in (int(text) for text in args.threads.split(",")):
        torch.set_num_threads(threads)
        for label in [] if args.settings == "none" else args.settings.split(","):
            setting = SETTINGS[label]
            sizes, train = setting["sizes"], setting["train"]
            data = synthetic_data(setting["shape"], sizes)
            batch = train["batch_size"]
            steps = setting.get("steps") or round(setting["epochs"] * iterations_per_epoch(sizes[0], batch))
            config = TrainConfig(steps=f"{steps}it", eval_every=f"{EVAL_EVERY}it", **train)
            forward = forward_flops(make_model(setting["model"], setting["shape"]), setting["shape"])
            peak = matmul_peak(threads)
            model = make_model(setting["model"], setting["shape"])
            train_model(model, data, TrainConfig(steps="5it", eval_every="5it", **train), masks=half_masks(model),
                        data_seed=0)  # first-call allocations and kernel selection
            plain_steps = min(steps, 300 if setting["model"].startswith("lenet") else 30)
            plain = plain_loop_seconds(make_model(setting["model"], setting["shape"]), data, setting, plain_steps)
            model = make_model(setting["model"], setting["shape"])
            start = time.perf_counter()
            train_model(model, data, config, masks=half_masks(model), data_seed=0)
            wall = time.perf_counter() - start
            evaluations = steps // EVAL_EVERY + (steps % EVAL_EVERY > 0)
            eval_flops = evaluation_flops(forward, evaluations * sizes[1] + 2 * sizes[2] + sizes[0])
            flops = training_flops(forward, steps * batch) + eval_flops
            print(f"{threads:>7} {label:>16} {peak / 1e9:>10.1f} {plain_steps / plain:>11.0f} {steps / wall:>17.0f} "
                  f"{flops / wall / 1e9:>8.1f} {100 * flops / wall / peak:>6.0f}% {100 * eval_flops / flops:>10.1f}%")
    print("(eval share: of the FLOPs counted; train_model it/s is over its whole wall time, evaluation included)")
    if args.kernels != "none":
        kernels = ["dense"] + [kernel for kernel in args.kernels.split(",") if kernel != "dense"]
        for threads in (int(text) for text in args.threads.split(",")):
            kernel_table(threads, args.kernel_settings.split(","), [float(p) / 100 for p in args.remaining.split(",")],
                         kernels, args.kernel_steps)
    print(f"load average at end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
