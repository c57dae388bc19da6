"""1. The lottery ticket hypothesis (Frankle & Carbin 2019, Figure 3 / Figure 4 of the seed paper): LeNet-300-100
on Fashion-MNIST, winning tickets (iterative and one-shot, reset to θ0) against the same masks reinitialized, and
random pruning; early-stop test accuracy and the early-stop iteration against weights remaining.

Paper protocol (section 2 and Appendix G, on MNIST): Adam 1.2e-3, batch 60, 50,000 iterations, layer-wise
magnitude pruning of 20% a round (output layer 10%), early stopping on 5,000 held-out training images, five
trials. Their claims: tickets reach the dense network's accuracy down to ~3.6% of weights (learning faster),
reinitialized tickets fall off below ~21%.

Scaled for about an hour of 2 CPU cores (`--workers 2`): 5,000 iterations a network instead of 50,000 (5.5 epochs
of the 55,000 training images; the paper's own early-stop iterations on MNIST are a few thousand), 15 rounds (to
3.6% remaining), the paper's 5 trials: 380 jobs, 1.9M iterations at ~3.5 ms each (measured: one thread, loaded
machine, evaluation every 100 iterations included), ~1.8 CPU-hours. Everything else is the paper's.
`--quick`: an MLP 32-32 on MNIST-1D (generated, no download), 40 iterations, 2 rounds, 2 trials.

    python -m benchmarks.reproduce.lth_fashion_mnist [--quick] [--out DIR] [--trials N] [--workers 2]
"""

from __future__ import annotations

import time
from typing import Sequence

from benchmarks.reproduce import common

VARIANTS = ("iterative_reset", "iterative_reinit", "oneshot_reset", "oneshot_reinit", "random_pruning")


def protocol(quick: bool, trials: int | None):
    import ticketlab

    if quick:
        config = ticketlab.preset("mnist1d").replace(**{
            "model.hidden": [32, 32], "train.steps": "40it", "train.eval_every": "20it", "prune.levels": 2,
            "trials": 2})
    else:
        config = ticketlab.preset("lenet_fashion_mnist").replace(**{
            "train.steps": "5000it", "prune.levels": 15, "data.data_dir": common.fashion_mnist_dir(),
            "data.download": False, "trials": 5})
    return config.replace(variants=list(VARIANTS), trials=trials or config.trials)


def main(argv: Sequence[str] | None = None) -> common.Outputs:
    args = common.parse_args(__doc__, argv, "runs/reproduce/lth_fashion_mnist")
    started = time.time()
    result = common.find(protocol(args.quick, args.trials), args.out, workers=args.workers)
    rows = (common.results_table(result.run_dir, args.out, "early_stop_test_accuracy")
            + common.results_table(result.run_dir, args.out, "early_stop_iteration"))
    return common.finish(args.out, rows, title="LTH: LeNet-300-100 on Fashion-MNIST" + (" (quick)" * args.quick),
                         note="Frankle & Carbin 2019, Figures 3-4: tickets, reinitialized tickets, random pruning.",
                         started=started)


if __name__ == "__main__":
    main()
