"""Tickets against the methods they compete with, on one budget axis (issue 26): IMP with weight rewinding
(`iterative_reset`), learning-rate rewinding (`lr_rewind`, Renda et al. 2020), pruning with fine-tuning
(`finetune`), gradual magnitude pruning (`gmp`, Zhu & Gupta 2017), RigL and SET (`rigl`, `set`: run when the
registry has them), SNIP and SynFlow at init, random pruning and the dense network, through one engine on the same
data, seeds and levels: one `find` run directory per network, so every method sees the same dense runs.

For each network it prints and writes the early-stop test accuracy (mean ± sample sd over trials) of every method at
every level, with the training cost of each result (results.csv's train_steps_total and train_flops_total: every
training that led to it, an IMP level paying the dense run and all its rounds; FLOPs = 3 x forward FLOPs x batch x
steps, Evci et al. 2020, Appendix H), and draws the two views: accuracy against weights remaining
(`<out>/<network>_weights.png`) and against total training cost, log axis (`<out>/<network>_cost.png`).

Protocols (Adam with a step schedule: the rate divided by 10 at 1/2 and 3/4 of training. The Frankle & Carbin
recipes keep it constant, but Renda et al.'s ordering is about the schedule: under a constant rate learning-rate
rewinding and fine-tuning would be the same method):
- LeNet-300-100 on Fashion-MNIST (`lenet_fashion_mnist_short`: Adam 1.2e-3, batch 60, 4,000 iterations a network),
  8 rounds of 36% (output 19%: two of the paper's 20% / 10% rounds in one) to 2.8% of weights remaining (41%,
  26%, 17%, 11%, 6.9%, 4.4%, 2.8%), 2 trials.
- Conv-2 on Fashion-MNIST scaled to the CPU (`conv2_fashion_mnist_small`: width 16, 5,000 training images, Adam
  5e-4, batch 60), 1,000 iterations a network (12 epochs), evaluation every 250; 8 rounds pruning the FC layers 36%
  a round (conv 10%, output 10%) to ~3% of weights remaining, 2 trials.
Rewinding to k = 10% of training (400 / 100 iterations) for weight rewinding and learning-rate rewinding, and
fine-tuning at the schedule's final rate for T - k iterations: the three retrain for the same budget, as in Renda
et al. The at-init methods and random pruning start from the same θk (and pay the k dense steps in their cost).
gmp prunes from 0 to 3/4 of training every 100 iterations, rigl and set update every 100 iterations to 3/4 of
training, one run per level.

Length (estimated from per-step times measured on one thread of a loaded machine): LeNet, per trial the dense run
and 8 levels of 9 methods: ~73 jobs, ~0.27M iterations at ~5.5 ms (a 4 ms step, and 2 ms for evaluating 15,000
images every 100), ~0.4 CPU-hour a trial; Conv-2, ~73 jobs and ~68K iterations a trial at ~60 ms (a ~35 ms step,
evaluation of 12,000 images every 250), ~1 CPU-hour a trial. Both networks, 2 trials: ~2.8 CPU-hours. The runs
resume: a killed run continues, a finished one trains nothing (Fashion-MNIST: `apt-get install -y
dataset-fashion-mnist`).
`--quick`: an MLP 32-32 on MNIST-1D (generated, no download), 20 iterations, 2 rounds, 2 trials: seconds; the test
suite runs it.

    python -m benchmarks.method_comparison [--quick] [--out DIR] [--trials N] [--workers 2]
"""

from __future__ import annotations

import math
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

if __package__ in (None, ""):  # run as a file: python benchmarks/method_comparison.py
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.reproduce import common  # noqa: E402

# in the order of the table; the ones the registry lacks (rigl, set before they are merged) are left out
METHODS = ("iterative_reset", "lr_rewind", "finetune", "gmp", "rigl", "set", "snip", "synflow", "random_pruning")
METRIC = "early_stop_test_accuracy"
COSTS = ("train_steps_total", "train_flops_total")


@dataclass(frozen=True)
class Network:
    name: str  # file names and table rows
    title: str
    config: Any


def methods() -> tuple[str, ...]:
    """The compared variants this install registers."""
    from ticketlab.lottery.variants import variant_names

    registered = variant_names()
    return tuple(name for name in METHODS if name in registered)


def _budget(config, rewind_fraction: float = 0.1):
    """Rewind to k = a fraction of training, fine-tune for T - k: the same retraining budget for the three."""
    total = int(config.train.steps.removesuffix("it"))
    rewind = int(total * rewind_fraction)
    return config.replace(**{"prune.rewind": f"{rewind}it", "prune.finetune_steps": f"{total - rewind}it"})


def _step_schedule(total: int) -> dict:
    """The learning rate divided by 10 at 1/2 and 3/4 of training (the step schedule of the ResNet recipes that
    Renda et al. compare on): without a schedule, learning-rate rewinding and fine-tuning would be the same method."""
    return {"train.schedule": "step", "train.milestones": [f"{total // 2}it", f"{3 * total // 4}it"],
            "train.gamma": 0.1}


def networks(quick: bool, trials: int | None) -> list[Network]:
    import ticketlab

    if quick:
        mlp = ticketlab.preset("mnist1d").replace(**{
            "model.hidden": [32, 32], "train.steps": "20it", "train.eval_every": "10it", "prune.levels": 2,
            "prune.gmp_every": "5it", "prune.dst_every": "5it", **_step_schedule(20)})
        chosen = [Network("mlp_mnist1d", "MLP 32-32 on MNIST-1D (quick)", mlp)]
    else:
        offline = {"data.data_dir": common.fashion_mnist_dir(), "data.download": False}
        lenet = ticketlab.preset("lenet_fashion_mnist_short").replace(**offline, **{
            "prune.rate": 0.36, "prune.output_rate": 0.19, "prune.levels": 8, **_step_schedule(4000)})
        conv = ticketlab.preset("conv2_fashion_mnist_small").replace(**offline, **{
            "train.steps": "1000it", "train.eval_every": "250it", "prune.rate": 0.36, "prune.levels": 8,
            **_step_schedule(1000)})
        chosen = [Network("lenet_fashion_mnist", "LeNet-300-100 on Fashion-MNIST", lenet),
                  Network("conv2_fashion_mnist", "Conv-2 (width 16, 5,000 images) on Fashion-MNIST", conv)]
    return [Network(net.name, net.title, _budget(net.config).replace(variants=list(methods()), trials=trials or 2))
            for net in chosen]


def _mean_sd(values: list[float]) -> str:
    spread = common.spread(values)
    if not spread["trials"]:
        return "-"
    return f"{100 * spread['mean']:.2f} ± {100 * spread['std']:.2f}"


def comparison_lines(network: Network, rows: list[dict[str, str]]) -> list[str]:
    """The printed table of one network: per method and level, accuracy (%) mean ± sd over trials and the cost."""
    from ticketlab.lottery.variants import variant_short_label

    lines = [f"{network.title}: early-stop test accuracy (%), mean ± sd over trials, and training cost",
             f"{'method':<14}{'level':>6}{'remain %':>10}{'accuracy %':>18}{'steps':>10}{'train GFLOPs':>14}"]
    groups: dict[tuple[str, int], list[dict[str, str]]] = {}
    for row in rows:
        name = "dense" if row["level"] == "0" else row["variant"]
        groups.setdefault((name, int(row["level"])), [])
        if row["level"] != "0" or row["variant"] == rows[0]["variant"]:  # level 0 once: every variant repeats it
            groups[(name, int(row["level"]))].append(row)
    order = ("dense", *methods())
    for (name, level), members in sorted(groups.items(), key=lambda item: (order.index(item[0][0]), item[0][1])):
        remaining = common.spread([common.number(row["weights_remaining_percent"]) for row in members])["mean"]
        steps = common.spread([common.number(row.get(COSTS[0])) for row in members])["mean"]
        flops = common.spread([common.number(row.get(COSTS[1])) for row in members])["mean"]
        lines.append(f"{variant_short_label(name) if name != 'dense' else 'dense':<14}{level:>6}{remaining:>10.2f}"
                     f"{_mean_sd([common.number(row[METRIC]) for row in members]):>18}"
                     f"{'-' if math.isnan(steps) else f'{steps:.0f}':>10}"
                     f"{'-' if math.isnan(flops) else f'{flops / 1e9:.3f}':>14}")
    return lines


def draw_views(network: Network, run_dir: Path, out_dir: Path) -> tuple[Path, Path]:
    """The two views of one network's run: accuracy against weights remaining, and against training cost."""
    from ticketlab.report.cost_figure import draw_cost_figure
    from ticketlab.report.figures import draw_lottery_figure
    from ticketlab.report.report import read_run_results
    from ticketlab.report.results import summarize_results

    summary = summarize_results(read_run_results(run_dir))
    weights, _ = draw_lottery_figure(summary, out_dir / f"{network.name}_weights", title=network.title)
    cost, _ = draw_cost_figure(summary, out_dir / f"{network.name}_cost", title=network.title)
    return weights, cost


def main(argv: Sequence[str] | None = None) -> common.Outputs:
    args = common.parse_args(__doc__, argv, "runs/benchmarks/method_comparison")
    started = time.time()
    table, printed, figures = [], [], []
    for network in networks(args.quick, args.trials):
        result = common.find(network.config, args.out, workers=args.workers)
        rows = common.read_csv(result.run_dir / "results.csv")
        for metric in (METRIC, *COSTS):
            table += common.results_table(result.run_dir, args.out, metric, group_prefix=f"{network.name} ")
        printed += comparison_lines(network, rows) + [""]
        figures += draw_views(network, result.run_dir, args.out)
    csv_path, md_path = common.write_table(
        args.out, table, title="Tickets against the methods they compete with" + " (quick)" * args.quick,
        note="Early-stop test accuracy and training cost (steps, FLOPs: every training that led to a result) per "
             "method and level, over trials; figures: <network>_weights.png and <network>_cost.png.")
    command = ["python", "-m", "benchmarks.method_comparison", *(["--quick"] * args.quick), "--out", str(args.out),
               *(["--trials", str(args.trials)] if args.trials else []),
               *(["--workers", str(args.workers)] if args.workers != 1 else [])]
    print("\n".join(printed))
    print(f"table: {md_path}\nfigures: {', '.join(str(path) for path in figures)}")
    print(f"reproduce (resumes; a finished run trains nothing): {shlex.join(command)}")
    return common.Outputs(args.out, csv_path, md_path, figures[0], time.time() - started)


if __name__ == "__main__":
    main(sys.argv[1:])
