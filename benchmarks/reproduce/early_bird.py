"""8. Early-bird tickets vs IMP at equal sparsity (You et al. 2020, "Drawing Early-Bird Tickets", Figures 3-4 and
Table 2): the mask drawn when masks stop changing during dense training (`early_bird`: trained on from the weights
at detection; `early_bird_reset`: from θ0), against IMP's ticket at the same level, and the training saved
(the detection step as a fraction of a full dense run, from the run's early_bird.csv).

The paper (VGG-16 / PreResNet-101 on CIFAR-10/100, channel pruning by BatchNorm scales, detection early in
training): early-bird tickets match or beat the tickets of full training at 30-70% channel sparsity, with up to
4.7x less training energy (their abstract).

Scaled for about an hour of 2 CPU cores: LeNet-300-100 on Fashion-MNIST with unstructured weight masks (ticketlab's
`weights` criterion; the paper's channel criterion needs BatchNorm networks that do not fit the hour), 5,000
iterations (as script 1), a mask every 100 iterations, detection when the last 5 masks are within a normalized
Hamming distance of 0.1, 15 rounds of 20% (to 3.6%), 5 trials (the margins rested on 2 before): 235 jobs, 1.2M
iterations at most (each search stops at detection), ~1.1 CPU-hours. `--quick`: MLP 32-32 on MNIST-1D, 60
iterations, a mask every 5 iterations, 2 rounds.

    python -m benchmarks.reproduce.early_bird [--quick] [--out DIR] [--trials N]
"""

from __future__ import annotations

import time
from typing import Sequence

from benchmarks.reproduce import common

VARIANTS = ("iterative_reset", "early_bird", "early_bird_reset")


def protocol(quick: bool, trials: int | None):
    import ticketlab

    if quick:
        config = ticketlab.preset("mnist1d").replace(**{
            "model.hidden": [32, 32], "train.steps": "60it", "train.eval_every": "20it", "prune.levels": 2,
            "prune.early_bird_every": "5it", "prune.early_bird_window": 3, "trials": 2})
    else:
        config = ticketlab.preset("lenet_fashion_mnist").replace(**{
            "train.steps": "5000it", "prune.levels": 15, "prune.early_bird_every": "100it",
            "data.data_dir": common.fashion_mnist_dir(), "data.download": False, "trials": 5})
    return config.replace(variants=list(VARIANTS), trials=trials or config.trials)


def main(argv: Sequence[str] | None = None) -> common.Outputs:
    args = common.parse_args(__doc__, argv, "runs/reproduce/early_bird")
    started = time.time()
    result = common.find(protocol(args.quick, args.trials), args.out, workers=args.workers)
    rows = common.results_table(result.run_dir, args.out, "early_stop_test_accuracy")
    early_bird_csv = result.run_dir / "early_bird.csv"
    if early_bird_csv.is_file():
        rows += common.aggregate(common.read_csv(early_bird_csv), run=result.run_dir.name, source="early_bird.csv",
                                 group_by=("level",), x="weights_remaining_percent",
                                 x_label="weights remaining (%)", metric="training_saved_percent",
                                 label=lambda row: "early-bird detection")
    return common.finish(args.out, rows, title="Early-bird tickets vs IMP: LeNet-300-100" + (" (quick)" * args.quick),
                         note="You et al. 2020: early-bird tickets against IMP at equal sparsity, and the share of "
                              "dense training the detection saves.",
                         started=started)


if __name__ == "__main__":
    main()
