"""Population training speed: K stacked MLP jobs vs the same K jobs trained one after another.

Everything is measured in one run, with the same thread count:
- the fp32 matmul peak (best of a few square products),
- a plain eager loop (torch.optim.Adam defaults, batches indexed from in-memory tensors) and a per-sample
  DataLoader pipeline (TensorDataset + default collate), each training K jobs one after another,
- `train_population` with K members (Adam, 50%-masks, own data orders, evaluation every `--eval-every` steps),
  reporting model-iterations/s of training alone (evaluation time subtracted) and achieved FLOP/s counted as
  6 x weights x samples per model-iteration; and, over the whole wall time, FLOP/s with the periodic validation
  passes counted too (2 x weights per example),
- the goal's K as two populations of K/2 in two single-threaded processes side by side (what `--workers 2`
  makes of a population in the planner), their combined rate against the same peak,
- evaluation's share of wall time in `train_model` (the reference, one job at a time) and in the population,
- peak memory of a K=32 population (in a fresh process), and a short fwd+bwd comparison of the hand-stacked
  backward with autograd through bmm and with torch.func.vmap(grad(functional_call)).
- the sparse path beside the dense one (`--sparse-remaining`, LeNet-300-100): at each percent of weights
  remaining, a K=16 population on dense, sparse (one block-diagonal product for all members) and auto kernels,
  and the same jobs trained one at a time by `train_model` on dense, sparse and auto kernels (`train.kernels`),
  per member, periodic evaluation counted in all (`--sparse-only` runs just this part).
Data are random tensors of each dataset's shape: speed does not depend on the values.

Reproduce:  python benchmarks/population_speed.py --threads 2
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import subprocess
import sys
import time

import torch
from torch import nn
from torch.nn import functional as F

import ticketlab
from flops import evaluation_flops, matmul_peak
from ticketlab.config import TrainConfig
from ticketlab.data.splits import DataSplits
from ticketlab.models import initialize
from ticketlab.models.mlp import MLP
from ticketlab.pruning import keep_top, prunable_weights, random_scores
from ticketlab.training import evaluation
from ticketlab.training import population as population_module
from ticketlab.training.loop import TrainingInterrupted, train_model
from ticketlab.training.population import PopulationMember, train_population
from ticketlab.training.population.classifier import ClassifierPopulation

WORKLOADS = {
    # input features, hidden widths, batch size, train / validation / test examples, the goal vs the plain loop,
    # and how long to measure: batched steps per population, steps per baseline job, evaluation period
    "lenet300_100": dict(features=784, hidden=(300, 100), batch=60, sizes=(55000, 5000, 10000), goal_k=16, goal=2.5,
                         iterations=100, baseline_steps=30, eval_every=50),
    "mnist1d_mlp": dict(features=40, hidden=tuple(ticketlab.preset("mnist1d").model.hidden), batch=100, sizes=(3500, 500, 1000), goal_k=32, goal=10.0,
                        iterations=300, baseline_steps=100, eval_every=100),
    # the MNIST-1D MLP before the default was widened to 256-256 (the size the 10x goal was first measured on)
    "mnist1d_mlp_100": dict(features=40, hidden=(100, 100), batch=100, sizes=(3500, 500, 1000), goal_k=32,
                            goal=10.0, iterations=300, baseline_steps=100, eval_every=100),
}
POPULATION_SIZES = (1, 4, 8, 16, 32)
BASELINE_JOBS = 4  # jobs trained one after another run at the same rate whatever their number
clock = time.perf_counter  # --clock cpu: process CPU time, robust to other processes' load with --threads 1


def synthetic_data(spec: dict, seed: int = 0) -> DataSplits:
    generator = torch.Generator().manual_seed(seed)
    train, val, test = spec["sizes"]

    def split(count):
        inputs = torch.rand(count, spec["features"], generator=generator)
        return inputs, torch.randint(0, 10, (count,), generator=generator)

    return DataSplits(*split(train), *split(val), *split(test), num_classes=10)


def weight_count(spec: dict) -> int:
    widths = [spec["features"], *spec["hidden"], 10]
    return sum(a * b for a, b in zip(widths[:-1], widths[1:]))


def make_model(spec: dict, seed: int) -> nn.Module:
    return initialize(MLP(spec["features"], spec["hidden"], 10), "glorot_normal", seed)


def plain_loop_rate(spec: dict, data: DataSplits, jobs: int, steps: int) -> float:
    """Model-iterations/s of `jobs` jobs trained one after another by the plainest eager loop."""
    batch = spec["batch"]
    if steps > 1:
        plain_loop_rate(spec, data, 1, 1)  # first-call allocations and kernel selection are not the loop's rate
    start = clock()
    for job in range(jobs):
        model = make_model(spec, job)
        optimizer = torch.optim.Adam(model.parameters())
        order = torch.randperm(len(data.x_train), generator=torch.Generator().manual_seed(job))
        for step in range(steps):
            indices = order[step * batch % (len(order) - batch):][:batch]
            loss = F.cross_entropy(model(data.x_train[indices]), data.y_train[indices])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return jobs * steps / (clock() - start)


def dataloader_rate(spec: dict, data: DataSplits, jobs: int, steps: int) -> float:
    """Model-iterations/s with a per-sample DataLoader (TensorDataset, shuffle, default collate)."""
    dataset = torch.utils.data.TensorDataset(data.x_train, data.y_train)
    if steps > 1:
        dataloader_rate(spec, data, 1, 1)
    start = clock()
    for job in range(jobs):
        model = make_model(spec, job)
        optimizer = torch.optim.Adam(model.parameters())
        loader = torch.utils.data.DataLoader(dataset, batch_size=spec["batch"], shuffle=True, drop_last=True,
                                             generator=torch.Generator().manual_seed(job))
        # epoch after epoch: one pass over MNIST-1D's 3,500 examples is only 35 batches
        batches = (batch for _ in itertools.count() for batch in loader)
        for step, (inputs, labels) in zip(range(steps), batches):
            loss = F.cross_entropy(model(inputs), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return jobs * steps / (clock() - start)


class EvalTimer:
    """Wall time spent in a function, by whether it ran on the training split (final) or not (periodic)."""

    def __init__(self, data: DataSplits):
        self.data, self.periodic, self.final = data, 0.0, 0.0

    def wrap(self, function, inputs_position: int):
        def timed(*args, **kwargs):
            start = clock()
            try:
                return function(*args, **kwargs)
            finally:
                spent = clock() - start
                if args[inputs_position] is self.data.x_train:
                    self.final += spent
                else:
                    self.periodic += spent
        return timed


def train_config(spec: dict, steps: int, eval_every: int, kernels: str = "dense") -> TrainConfig:
    return TrainConfig(optimizer="adam", lr=1e-3, batch_size=spec["batch"], steps=f"{steps}it",
                       eval_every=f"{eval_every}it", kernels=kernels)


def half_masks(model: nn.Module, seed: int, remaining: float = 0.5) -> dict[str, torch.Tensor]:
    weights = prunable_weights(model)
    return keep_top(random_scores(weights, seed=seed),
                    {name: max(1, round(w.numel() * remaining)) for name, w in weights.items()})


def population_run(spec: dict, data: DataSplits, count: int, iterations: int, eval_every: int,
                   remaining: float = 0.5, kernels: str = "dense") -> dict:
    """Train `count` members for `iterations` batched steps (no end-of-job evaluation); times and rates."""
    members = []
    for member in range(count):
        model = make_model(spec, member)
        members.append(PopulationMember(model, half_masks(model, member, remaining), data_seed=member))
    config = train_config(spec, 10 * iterations, eval_every, kernels)
    if kernels == "auto":  # the calibration (cached after the first) is not the training's time
        ClassifierPopulation(members, data, config)
    timer = EvalTimer(data)
    original = ClassifierPopulation.evaluate
    ClassifierPopulation.evaluate = timer.wrap(original, 2)
    start = clock()
    try:
        train_population(members, data, config, stop_after_iterations=iterations)
    except TrainingInterrupted:
        pass
    finally:
        ClassifierPopulation.evaluate = original
    wall = clock() - start
    train_time = wall - timer.periodic - timer.final
    evaluations = count * (iterations // eval_every)
    return dict(wall=wall, eval=timer.periodic, rate=count * iterations / train_time,
                rate_with_eval=count * iterations / wall, eval_share=timer.periodic / wall,
                eval_per_member=timer.periodic / max(evaluations, 1))


def reference_eval_share(spec: dict, data: DataSplits, steps: int, eval_every: int) -> dict:
    """train_model on one job: the share of its wall time (end-of-job evaluation left out) spent evaluating."""
    timer = EvalTimer(data)
    original = evaluation.evaluate
    evaluation.evaluate = timer.wrap(original, 1)
    model = make_model(spec, 0)
    start = clock()
    try:
        train_model(model, data, train_config(spec, steps, eval_every), masks=half_masks(model, 0), data_seed=0)
    finally:
        evaluation.evaluate = original
    wall = clock() - start - timer.final
    return dict(eval_share=timer.periodic / wall, rate=steps / (wall - timer.periodic),
                eval_per_member=timer.periodic / max(steps // eval_every, 1))


def split_processes_run(name: str, count: int, iterations: int, threads: int) -> dict:
    """`count` members as two populations of count/2, each in a process of threads/2 threads, started together;
    combined training rate (the sum) and rate over the whole wall time (the slower process's)."""
    start_at = time.time() + 8.0  # both import torch and warm up first
    command = [sys.executable, __file__, "--threads", str(max(1, threads // 2)), "--half-run", name,
               str(count // 2), str(iterations), str(start_at)]
    processes = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    runs = [json.loads(process.communicate()[0].strip().splitlines()[-1]) for process in processes]
    wall = max(run["wall"] for run in runs)
    member_iterations = 2 * (count // 2) * iterations
    return dict(rate=sum(run["rate"] for run in runs), rate_with_eval=member_iterations / wall,
                eval_share=sum(run["eval"] for run in runs) / sum(run["wall"] for run in runs))


def peak_memory_probe(name: str, count: int, iterations: int, eval_every: int) -> None:
    """(Run in a fresh process.) Print the RSS before training and the peak RSS of the process, in bytes."""
    spec = WORKLOADS[name]
    data = synthetic_data(spec)
    members = []
    for member in range(count):
        model = make_model(spec, member)
        members.append(PopulationMember(model, half_masks(model, member), data_seed=member))
    rss = memory_status("VmRSS")
    try:
        train_population(members, data, train_config(spec, 10 * iterations, eval_every),
                         stop_after_iterations=iterations)
    except TrainingInterrupted:
        pass
    print(rss, memory_status("VmHWM"))


def memory_status(field: str) -> int:
    """Bytes of a /proc/self/status field: VmRSS now, VmHWM the peak (ru_maxrss would include the parent's
    peak, which Linux carries across fork and exec)."""
    with open("/proc/self/status") as handle:
        return next(int(line.split()[1]) for line in handle if line.startswith(field + ":")) * 1024


def backward_comparison(spec: dict, data: DataSplits, count: int, repeats: int = 5) -> dict[str, float]:
    """Seconds per fwd+bwd of `count` stacked members: hand-written backward, autograd through bmm, vmap(grad)."""
    from torch.func import functional_call, grad, vmap

    members = [PopulationMember(make_model(spec, k), {}, data_seed=k) for k in range(count)]
    population = ClassifierPopulation(members, data, train_config(spec, 100, 100))
    stacked = population.stack
    inputs, labels = population.batch(data, None)

    def hand_written():
        population.net.loss_and_gradients(stacked, inputs, labels)

    leaves = [param.clone().requires_grad_() for param in stacked.params]

    def autograd_bmm():
        hidden = inputs
        for layer, (weight_index, bias_index) in enumerate(population.net.layers):
            hidden = torch.baddbmm(leaves[bias_index].unsqueeze(1), hidden, leaves[weight_index].transpose(1, 2))
            if layer < len(population.net.layers) - 1:
                hidden = hidden.relu()
        loss = F.cross_entropy(hidden.reshape(-1, 10), labels.reshape(-1), reduction="none").view(count, -1).mean(1)
        torch.autograd.grad(loss.sum(), leaves)

    template = make_model(spec, 0)
    names = stacked.names
    per_member_grad = vmap(grad(lambda params, x, y: F.cross_entropy(
        functional_call(template, dict(zip(names, params)), (x,)), y)))

    def vmapped():
        per_member_grad(list(stacked.params), inputs, labels)

    timings = {}
    with torch.no_grad():
        hand_written()
    for label, function in (("hand-written backward (used)", hand_written), ("autograd through bmm", autograd_bmm),
                            ("vmap(grad(functional_call))", vmapped)):
        function()
        start = clock()
        for _ in range(repeats):
            if label.startswith("hand"):
                with torch.no_grad():
                    function()
            else:
                function()
        timings[label] = (clock() - start) / repeats
    return timings


def single_job_rate(spec: dict, data: DataSplits, iterations: int, eval_every: int, remaining: float,
                    kernels: str, jobs: int = 2) -> float:
    """Model-iterations/s (periodic evaluation included, none at the end) of `jobs` jobs trained one at a time by
    `train_model` on `kernels`."""
    config = TrainConfig(optimizer="adam", lr=1e-3, batch_size=spec["batch"], steps=f"{10 * iterations}it",
                         eval_every=f"{eval_every}it", kernels=kernels)
    warm = make_model(spec, 0)
    try:  # warm-up (and auto's calibration)
        train_model(warm, data, config, masks=half_masks(warm, 0, remaining), data_seed=0, stop_after_step=3)
    except TrainingInterrupted:
        pass
    start = clock()
    for job in range(jobs):
        model = make_model(spec, job)
        try:
            train_model(model, data, config, masks=half_masks(model, job, remaining), data_seed=job,
                        stop_after_step=iterations)
        except TrainingInterrupted:
            pass
    return jobs * iterations / (clock() - start)


def sparse_beside_dense(remaining: list[float], scale: float) -> None:
    spec = WORKLOADS["lenet300_100"]
    data = synthetic_data(spec)
    iterations, eval_every, count = max(1, round(200 * scale)), 100, 16
    print(f"\n== sparse kernels beside dense, lenet300_100, batch {spec['batch']}: {iterations} iterations per job, "
          f"evaluation every {eval_every} counted; model-iterations/s per member")
    print(f"{'remaining':>9} {'pop. dense':>10} {'pop. sparse':>11} {'pop. auto':>9} {'one job dense':>14} "
          f"{'one job sparse':>15} {'one job auto':>13} {'pop. sparse/dense':>18} {'pop. auto/dense':>16}")
    population_run(spec, data, count, max(1, iterations // 4), eval_every, 1.0)  # warm-up: the first run pays
    # one-time costs (allocations, page faults) that would otherwise count against whichever path runs first
    for fraction in remaining:
        populations = {kernels: population_run(spec, data, count, iterations, eval_every, fraction,
                                               kernels)["rate_with_eval"] for kernels in ("dense", "sparse", "auto")}
        rates = {kernels: single_job_rate(spec, data, iterations, eval_every, fraction, kernels)
                 for kernels in ("dense", "sparse", "auto")}
        print(f"{100 * fraction:>8.1f}% {populations['dense']:>10.0f} {populations['sparse']:>11.0f} "
              f"{populations['auto']:>9.0f} {rates['dense']:>14.0f} {rates['sparse']:>15.0f} {rates['auto']:>13.0f} "
              f"{populations['sparse'] / populations['dense']:>17.2f}x "
              f"{populations['auto'] / populations['dense']:>15.2f}x", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="cpu: this process's CPU time (use with --threads 1 on a loaded machine)")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every measured length")
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--sparse-remaining", default="100,41,21,8.6,3.6",
                        help="percents of weights remaining for the sparse-beside-dense table (none: skip it)")
    parser.add_argument("--sparse-only", action="store_true", help="run only the sparse-beside-dense table")
    parser.add_argument("--memory-probe", nargs=2, metavar=("WORKLOAD", "K"), help=argparse.SUPPRESS)
    parser.add_argument("--half-run", nargs=4, metavar=("WORKLOAD", "K", "ITERATIONS", "START_AT"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    global clock
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    if args.memory_probe:
        peak_memory_probe(args.memory_probe[0], int(args.memory_probe[1]), 20, 10)
        return
    if args.half_run:
        name, count, iterations, start_at = args.half_run
        spec = WORKLOADS[name]
        data = synthetic_data(spec)
        population_run(spec, data, 1, 2, spec["eval_every"])  # warm up, then start with the other process
        time.sleep(max(0.0, float(start_at) - time.time()))
        run = population_run(spec, data, int(count), int(iterations), spec["eval_every"])
        print(json.dumps(run))
        return

    print(f"command: python benchmarks/population_speed.py --threads {args.threads} --clock {args.clock} "
          f"--scale {args.scale} --workloads {args.workloads} --sparse-remaining {args.sparse_remaining}"
          + (" --sparse-only" if args.sparse_only else ""))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs visible, "
          f"load average at start {os.getloadavg()[0]:.1f}")
    peak = matmul_peak(clock=clock)
    print(f"fp32 matmul peak ({args.threads} threads): {peak / 1e9:.1f} GFLOP/s")
    print("GFLOP/s and % peak: training alone (6 x weights x examples over training time); '+eval': the periodic "
          "validation passes counted too (2 x weights per example), over the whole wall time")

    for name in [] if args.sparse_only else args.workloads.split(","):
        spec = WORKLOADS[name]
        data = synthetic_data(spec)
        iterations, eval_every = max(1, round(spec["iterations"] * args.scale)), spec["eval_every"]
        baseline_steps = max(1, round(spec["baseline_steps"] * args.scale))
        flops_per_model_iteration = 6 * weight_count(spec) * spec["batch"]
        print(f"\n== {name}: {spec['features']}-{'-'.join(map(str, spec['hidden']))}-10, batch {spec['batch']}, "
              f"{weight_count(spec)} weights, {flops_per_model_iteration / 1e6:.1f} MFLOP per model-iteration; "
              f"population: {iterations} batched steps, evaluation every {eval_every}; baselines: {BASELINE_JOBS} "
              f"jobs x {baseline_steps} steps one after another")
        plain = plain_loop_rate(spec, data, BASELINE_JOBS, baseline_steps)
        loader = dataloader_rate(spec, data, BASELINE_JOBS, baseline_steps)
        eval_flops_per_model_iteration = evaluation_flops(2 * weight_count(spec), spec["sizes"][1]) / eval_every
        print(f"{'K':>3} {'plain it/s':>11} {'loader it/s':>12} {'population it/s':>16} {'x plain':>8} "
              f"{'x loader':>9} {'GFLOP/s':>8} {'% peak':>7} {'+eval GF/s':>11} {'% peak':>7} {'eval share':>11}")
        rows = {}

        def print_row(label, run):
            achieved = run["rate"] * flops_per_model_iteration
            whole = run["rate_with_eval"] * (flops_per_model_iteration + eval_flops_per_model_iteration)
            print(f"{label:>3} {plain:>11.0f} {loader:>12.0f} {run['rate']:>16.0f} {run['rate'] / plain:>8.2f} "
                  f"{run['rate'] / loader:>9.2f} {achieved / 1e9:>8.1f} {100 * achieved / peak:>6.0f}% "
                  f"{whole / 1e9:>11.1f} {100 * whole / peak:>6.0f}% {100 * run['eval_share']:>10.1f}%")

        for count in POPULATION_SIZES:
            run = population_run(spec, data, count, iterations, eval_every)
            rows[count] = (plain, run)
            print_row(count, run)
        goal_k = spec["goal_k"]
        split = split_processes_run(name, goal_k, iterations, args.threads)
        print_row(f"{goal_k // 2}+{goal_k // 2}", split)
        print(f"({goal_k // 2}+{goal_k // 2}: K={goal_k} as two populations of {goal_k // 2} in two 1-thread "
              "processes side by side, their combined rates; what --workers 2 makes of a population)")
        plain, run = rows[goal_k]
        print(f"goal at K={goal_k}: >= {spec['goal']}x the plain loop -> {run['rate'] / plain:.2f}x "
              f"(with periodic evaluation counted: {run['rate_with_eval'] / plain:.2f}x; as two processes "
              f"{split['rate'] / plain:.2f}x and {split['rate_with_eval'] / plain:.2f}x)")
        reference = reference_eval_share(spec, data, iterations, eval_every)
        after = rows[32][1]
        print(f"evaluation share of wall time, eval every {eval_every} steps (end-of-job evaluation left out): "
              f"train_model one job at a time {100 * reference['eval_share']:.1f}% -> population K=32 "
              f"{100 * after['eval_share']:.1f}%; per member and evaluation point "
              f"{1e3 * reference['eval_per_member']:.1f} ms -> {1e3 * after['eval_per_member']:.1f} ms "
              f"(train_model tests at every new validation minimum, the population once per job, at its end, "
              f"outside this window; train_model trains at {reference['rate']:.0f} it/s)")
        probe = subprocess.run(
            [sys.executable, __file__, "--threads", str(args.threads), "--memory-probe", name, "32"],
            capture_output=True, text=True, check=True,
        )
        rss, peak_rss = map(int, probe.stdout.split())
        estimate = 32 * population_module.member_memory_bytes(make_model(spec, 0), train_config(spec, 1, 1),
                                                              spec["sizes"][0])
        print(f"peak memory, K=32 (fresh process, 20 steps + 2 evaluations): {peak_rss / 2**20:.0f} MiB RSS, "
              f"{(peak_rss - rss) / 2**20:.0f} MiB above the process before training; estimate "
              f"{estimate / 2**20:.0f} MiB + evaluation <= {population_module.population_eval_bytes() / 2**20:.0f} MiB")
        if name == "lenet300_100":
            timings = backward_comparison(spec, data, 16)
            print("fwd+bwd of 16 stacked members: "
                  + ", ".join(f"{label} {1e3 * seconds:.1f} ms" for label, seconds in timings.items()))
    if args.sparse_remaining != "none":
        sparse_beside_dense([float(text) / 100 for text in args.sparse_remaining.split(",")], args.scale)
    print(f"\nload average at end {os.getloadavg()[0]:.1f} (on a shared machine other jobs' load makes these noisy)")


if __name__ == "__main__":
    main()
