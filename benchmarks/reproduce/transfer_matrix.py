"""3. Ticket transfer (Morcos, Yu, Paganini & Tian 2019, "One ticket to win them all", Figures 2-6): tickets found
on one class subset with one optimizer, trained on another subset and/or with the other optimizer, against the
target's own tickets, random tickets of the same layer-wise sparsity and the dense target network.

Sources and targets: Fashion-MNIST classes 0-4 and 5-9, each with Adam and with SGD (momentum 0.9): 4 configs,
every one a source for the other three (`ticketlab.transfer_tickets`, the output layer left dense as in Morcos
et al.'s transfers between datasets of different classes). The paper (VGG-19 / ResNet-50 on CIFAR-10/100, SVHN,
Fashion-MNIST, ImageNet): tickets from larger datasets transfer, often as well as the target's own;
Adam <-> SGD tickets transfer at most sparsities; random tickets fall below both.

Scaled for about an hour of 2 CPU cores: LeNet-300-100 (the paper's conv nets do not fit), 5,000 iterations a
network (as script 1), Adam 1.2e-3 (Frankle & Carbin) or SGD 0.05 momentum 0.9, 8 rounds of 20% (to 16.8% remaining;
output layer 10%), transfers at levels 4 and 8 (41.0% and 16.8%), 3 trials: 108 source jobs and 288 transfer jobs,
1.26M iterations at ~3.5 ms, ~1.2 CPU-hours. `--quick`: MLP 32-32 on MNIST-1D, two configs only (classes 0-4 with
Adam, 5-9 with SGD), 40 iterations, 1 round.

    python -m benchmarks.reproduce.transfer_matrix [--quick] [--out DIR] [--trials N]
"""

from __future__ import annotations

import time
from typing import Sequence

from benchmarks.reproduce import common

SUBSETS = ("0-4", "5-9")
OPTIMIZERS = {"adam": {"train.optimizer": "adam", "train.lr": 1.2e-3, "train.momentum": 0.0},
              "sgd": {"train.optimizer": "sgd", "train.lr": 0.05, "train.momentum": 0.9}}


def protocol(quick: bool, trials: int | None):
    """(the configs, one per class subset and optimizer; the levels transferred)."""
    import ticketlab

    if quick:
        base = ticketlab.preset("mnist1d").replace(**{
            "model.hidden": [32, 32], "train.steps": "40it", "train.eval_every": "20it", "prune.levels": 1,
            "data.validation_size": 200, "trials": 2})
        levels = [1]
    else:
        base = ticketlab.preset("lenet_fashion_mnist").replace(**{
            "train.steps": "5000it", "prune.levels": 8, "data.data_dir": common.fashion_mnist_dir(),
            "data.download": False, "trials": 3})
        levels = [4, 8]
    base = base.replace(variants=["iterative_reset"], trials=trials or base.trials)
    pairs = [(subset, optimizer) for subset in SUBSETS for optimizer in OPTIMIZERS]
    if quick:  # two configs that differ in both the classes and the optimizer: every code path, a quarter the jobs
        pairs = [("0-4", "adam"), ("5-9", "sgd")]
    configs = [base.replace(**{"data.classes": subset, **OPTIMIZERS[optimizer]}) for subset, optimizer in pairs]
    return configs, levels


def main(argv: Sequence[str] | None = None) -> common.Outputs:
    import ticketlab

    args = common.parse_args(__doc__, argv, "runs/reproduce/transfer_matrix")
    started = time.time()
    configs, levels = protocol(args.quick, args.trials)
    source_runs = [common.find(config, args.out, workers=args.workers).run_dir for config in configs]
    rows = []
    for target, target_run in zip(configs, source_runs):
        sources = [run for run in source_runs if run != target_run]
        result = ticketlab.transfer_tickets(sources, target, levels=levels, root=common.runs_root(args.out),
                                            workers=args.workers, progress=False, report=False)
        transfer_rows = [row for row in common.read_csv(result.transfer_csv)
                         if row["level"] == "0" or int(row["level"]) in levels]
        rows += common.aggregate(transfer_rows, run=result.transfer_dir.name, source="transfer.csv",
                                 group_by=("source_data", "target", "variant", "level"),
                                 x="weights_remaining_percent", x_label="weights remaining (%)",
                                 metric="early_stop_test_accuracy",
                                 label=lambda row: f"{row['source_data']} -> {row['target']} ({row['variant']})")
    return common.finish(args.out, rows, title="Ticket transfer across class subsets and optimizers"
                         + (" (quick)" * args.quick),
                         note="Morcos et al. 2019: transferred tickets vs the target's own (target_found), random "
                              "tickets and the dense target; rows with target == source_data are the target's own.",
                         started=started, draw=draw_matrix)


def _fields(row) -> dict[str, str]:
    return dict(part.split("=", 1) for part in row["select"].split("&"))


def draw_matrix(out_dir, rows, title: str):
    """figure.png: one matrix per level transferred, a row per target and a column per ticket source (the diagonal:
    the target's own ticket), then the target's random ticket and dense network; each cell the mean early-stop
    test accuracy, coloured by its difference from the target's random ticket."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    cells = {}
    for row in rows:
        fields = _fields(row)
        cells[(fields["source_data"], fields["target"], fields["variant"], int(fields["level"]))] = 100 * row["mean"]
    targets = list(dict.fromkeys(target for _, target, _, _ in cells))
    levels = sorted({level for _, _, _, level in cells if level > 0})
    columns = [*targets, "random ticket", "dense"]
    figure, axes = plt.subplots(1, len(levels), figsize=(6.2 * len(levels), 0.6 * len(targets) + 2.4), squeeze=False)
    for axis, level in zip(axes[0], levels):
        values, deltas = [], []
        for target in targets:
            random = next((value for (_, tgt, variant, lvl), value in cells.items()
                           if tgt == target and variant == "random_ticket" and lvl == level), float("nan"))
            line = [cells.get((source, target, "target_found" if source == target else "transferred", level),
                              float("nan")) for source in targets]
            line += [random, cells.get((target, target, "dense", 0), float("nan"))]
            values.append(line)
            deltas.append([value - random for value in line])
        image = axis.imshow(deltas, cmap="RdBu", vmin=-1.2, vmax=1.2)
        for i, line in enumerate(values):
            for j, value in enumerate(line):
                axis.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=8,
                          fontweight="bold" if i == j else "normal")
        axis.set_xticks(range(len(columns)), [f"from {name}" if name in targets else name for name in columns],
                        rotation=30, ha="right", fontsize=8)
        axis.set_yticks(range(len(targets)), [f"target {name}" for name in targets], fontsize=8)
        remaining = next((row["x"] for row in rows if _fields(row)["level"] == str(level)), None)
        axis.set_title(f"level {level}" + (f" ({remaining:.1f}% of weights)" if remaining else ""), fontsize=9)
        figure.colorbar(image, ax=axis, shrink=0.8, label="points above the random ticket")
    figure.suptitle(f"{title}: early-stop test accuracy (%), the target's own ticket on the diagonal", fontsize=10)
    return common.save_figure(figure, out_dir)


if __name__ == "__main__":
    main()
