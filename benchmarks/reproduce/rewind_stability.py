"""2. Rewinding and instability (Frankle, Dziugaite, Roy & Carbin 2020, "Linear Mode Connectivity and the Lottery
Ticket Hypothesis", Figures 3-5): a BatchNorm ResNet-20 (width-scaled) on Fashion-MNIST. Two measurements against
the rewind step k:

- the early-stop test accuracy of the IMP subnetwork at one sparsity when its survivors are rewound to W_k
  (`ticketlab.lottery.sweep.rewind_sweep`, the dense network trained once);
- the instability: the test-error barrier on the linear path between two copies trained from W_k with different
  data orders, for the dense network and the IMP subnetwork (`ticketlab.analysis.stability`).

The paper (CIFAR-10 ResNet-20, 30K iterations, SGD 0.1 momentum 0.9, batch 128, global pruning 20% a round):
the IMP subnetwork at 16.8% weights remaining is unstable at k = 0 (a large test-error barrier) and not matching;
rewound to k ≈ 2,000 iterations (~3% of training) it becomes stable (barrier ~0) and matching.

Scaled for about an hour of 2 CPU cores (`--workers 2`): ResNet-20 of width 8 (the paper's is 16), 10,000
Fashion-MNIST images resized to 16x16 (one channel; at 28x28 an iteration costs 3x more, 0.22 CPU-s measured,
and the protocol ~5 CPU-hours), 1,200 iterations a network (lr x0.1 at 900 and 1,100), 5 rounds to 32.8%
remaining (the paper's 16.8% needs 8 rounds, 60% more training), rewinds 0, 25, 100, 300 it (0-25% of training,
as the paper's 0-~10% of a far longer run), 3 trials (the issue's minimum; 2 would fit the hour), 11 points a path
on 2,000 train and test images: 69,000 iterations of the sweep and 53,000 of the 48 stability copies, both in
`--workers` processes: 79 minutes of the 2 cores measured. The scaled k grid
keeps the ratio to training length, not the count of iterations. `--quick`: ResNet-8 of width 4 on generated
8x8 images, 20 iterations, 1 round.

    python -m benchmarks.reproduce.rewind_stability [--quick] [--out DIR] [--trials N]
"""

from __future__ import annotations

import time
from typing import Sequence

from benchmarks.reproduce import common


def protocol(quick: bool, trials: int | None):
    """(config, rewind steps, stability settings, custom data or None)."""
    import ticketlab
    from ticketlab.analysis.stability import StabilitySettings

    config = ticketlab.preset("resnet20_cifar10").replace(variants=["iterative_reset"])
    if quick:
        config = config.replace(**{
            "model.width": 4, "model.depth": 8, "data.validation_size": 100, "data.augment": False,
            "train.batch_size": 50,
            "train.steps": "20it", "train.milestones": ["15it"], "train.eval_every": "10it", "prune.levels": 1,
            "trials": 2})
        rewinds, points, examples, data = ("0it", "5it"), 3, None, common.tiny_images()
    else:
        config = config.replace(**{
            "model.width": 8, "data.name": "fashion_mnist", "data.data_dir": common.fashion_mnist_dir(),
            "data.download": False, "data.augment": False, "data.image_size": 16, "data.train_size": 10_000,
            "data.validation_size": 2_000,
            "train.steps": "1200it", "train.milestones": ["900it", "1100it"], "train.eval_every": "100it",
            "prune.levels": 5, "trials": 3})
        rewinds, points, examples, data = ("0it", "25it", "100it", "300it"), 11, 2000, None
    config = config.replace(trials=trials or config.trials)
    settings = StabilitySettings(rewind_steps=rewinds, levels=(0, config.prune.levels), points=points,
                                 train_examples=examples, test_examples=examples, batchnorm_examples=examples)
    return config, rewinds, settings, data


def main(argv: Sequence[str] | None = None) -> common.Outputs:
    from ticketlab.analysis.stability import STABILITY_DIR, stability_analysis
    from ticketlab.config import parse_step
    from ticketlab.api import rewind_sweep

    args = common.parse_args(__doc__, argv, "runs/reproduce/rewind_stability")
    started = time.time()
    config, rewinds, settings, data = protocol(args.quick, args.trials)
    sweep = rewind_sweep(config, list(rewinds), root=common.runs_root(args.out), data=data, progress=False,
                         report=False, workers=args.workers)
    level = config.prune.levels
    rows = []
    for text, result in sweep.experiments.items():
        results = [row for row in common.read_csv(result.run_dir / "results.csv")
                   if row["variant"] == "iterative_reset" and row["level"] == str(level)]
        rows += common.aggregate(results, run=result.run_dir.name, source="results.csv",
                                 group_by=("variant", "level"), x="level", x_value=parse_step(text, 1),
                                 x_label="rewind step k (iterations)", metric="early_stop_test_accuracy",
                                 label=lambda row: f"IMP level {level}")
    host = sweep.experiments[rewinds[0]].run_dir
    # The copies train in the same worker processes as the sweep (built-in data only: a worker rebuilds the run).
    analysis = stability_analysis(host, settings, data=data, progress=False, figures=not args.quick,
                                  workers=args.workers if data is None else 1)
    stability = common.read_csv(analysis.files["stability_csv"])
    rows += common.aggregate(stability, run=host.name, source=str(STABILITY_DIR / "stability.csv"),
                             group_by=("level", "rewind_step"), x="rewind_step", metric="test_barrier",
                             x_label="rewind step k (iterations)",
                             label=lambda row: "dense" if row["level"] == "0" else f"IMP level {row['level']} "
                             f"({float(row['weights_remaining_percent']):.1f}%)")
    return common.finish(args.out, rows, title="Rewinding and instability: ResNet-20 (BatchNorm)"
                         + (" (quick)" * args.quick),
                         note="Frankle et al. 2020, Figures 3-5: accuracy at one sparsity and the test-error "
                              "barrier between two data orders, against the rewind step.",
                         started=started, log_x=False, reverse_x=False)


if __name__ == "__main__":
    main()
