"""7. Pruning at initialization, sanity-checked (Frankle, Dziugaite, Roy & Carbin 2021, "Pruning Neural Networks at
Initialization: Why are We Missing the Mark?", Figures 2-4): IMP (iterative, reset to θ0) against SNIP, GraSP and
SynFlow masks found at initialization, each with the paper's controls: the mask shuffled within each layer
(`<method>_shuffled`) and the mask kept on freshly drawn weights (`<method>_reinit`); random pruning for scale.

The paper (VGG-16, ResNet-20/18/50 on CIFAR-10 and ImageNet, 3-5 trials): IMP (with rewinding) beats every
at-init method at most sparsities; SNIP, GraSP and SynFlow are unchanged or improved by shuffling and
reinitialization (they learn per-layer sparsities, not which weights), and magnitude / random pruning are the
baselines they only sometimes beat.

GraSP as Wang et al.'s code has it (github.com/alecwangcq/GraSP, pruner/GraSP.py): both the gradient g and the
Hessian-gradient product Hg are taken on the cross-entropy of the logits divided by T = 200
(`prune.grasp_temperature`, whose default is their T). Earlier GraSP numbers in this manual used T = 1.

Scaled for about an hour of 2 CPU cores: LeNet-300-100 on Fashion-MNIST (the paper's conv nets do not fit), 5,000
iterations a network (Adam 1.2e-3, batch 60: Frankle & Carbin's LeNet protocol, shortened as in script 1), 12 rounds
of 20% to 6.9% (output layer 10%), 3 trials: 399 jobs, 2.0M iterations at ~3.5 ms, ~1.9 CPU-hours. `--quick`: MLP
32-32 on MNIST-1D, 40 iterations, 2 rounds, 2 trials.

    python -m benchmarks.reproduce.pruning_at_init [--quick] [--out DIR] [--trials N]
"""

from __future__ import annotations

import time
from typing import Sequence

from benchmarks.reproduce import common

METHODS = ("snip", "grasp", "synflow")
VARIANTS = ("iterative_reset", "random_pruning") + tuple(
    f"{method}{control}" for method in METHODS for control in ("", "_shuffled", "_reinit"))


def protocol(quick: bool, trials: int | None):
    import ticketlab

    if quick:
        config = ticketlab.preset("mnist1d").replace(**{
            "model.hidden": [32, 32], "train.steps": "40it", "train.eval_every": "20it", "prune.levels": 2,
            "trials": 2})
    else:
        config = ticketlab.preset("lenet_fashion_mnist").replace(**{
            "train.steps": "5000it", "prune.levels": 12, "data.data_dir": common.fashion_mnist_dir(),
            "data.download": False, "trials": 3})
    return config.replace(variants=list(VARIANTS), trials=trials or config.trials)


def main(argv: Sequence[str] | None = None) -> common.Outputs:
    args = common.parse_args(__doc__, argv, "runs/reproduce/pruning_at_init")
    started = time.time()
    config = protocol(args.quick, args.trials)
    result = common.find(config, args.out, workers=args.workers)
    rows = common.results_table(result.run_dir, args.out, "early_stop_test_accuracy")
    temperature = config.prune.grasp_temperature
    return common.finish(args.out, rows, title="Pruning at init vs IMP: LeNet-300-100" + (" (quick)" * args.quick),
                         note=f"Frankle et al. 2021, Figures 2-4: IMP vs SNIP, GraSP (temperature {temperature:g}, "
                              "as Wang et al.'s code) and SynFlow, each with its shuffled and reinitialized controls.",
                         started=started)


if __name__ == "__main__":
    main()
