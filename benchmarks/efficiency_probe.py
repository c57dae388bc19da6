"""Short probes that separate the causes of a FLOP-bound efficiency that differs between two runs of the same
benchmark (docs/performance.md, "Why the same benchmark reaches 78% in one place and 57% in another").

Each probe takes seconds to a minute on one thread, and times with the process's CPU time as well as the wall
clock, so that it says something on a machine other work shares (the load average is printed at start and end):

- `peak`: the fp32 matmul peak as `flops.matmul_peak` measures it (best single product: a burst) against a
  sustained one (2048 x 2048 products back to back for `--seconds`, the median and the slowest 1-second window),
  and the batched product of the workload's shape ([K, 60, 784] x [K, 784, 300], what a LeNet population spends
  most of its step in), burst and sustained;
- `part`: one population part as a `--workers 2` process trains it (K LeNet-300-100 members, Adam batch 60,
  evaluation every 100 steps on 5,000 examples, 1 thread), CPU seconds per training step and per evaluation
  point, minor page faults and context switches per step; `--tree` runs another checkout's code (an older
  commit, to tell a code regression from the machine);
- `variants`: `part` again in fresh processes under different settings (MALLOC_ARENA_MAX=1, glibc's defaults
  instead of ticketlab's allocator setting, one interop thread, pinned to one core with taskset, two threads).

Reproduce:  python benchmarks/efficiency_probe.py peak part variants
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _clocks():
    return time.perf_counter(), time.process_time()


def burst_and_sustained(product, flops: float, seconds: float) -> dict:
    """GFLOP/s of `product()`: the best of 3 single calls (a burst, as flops.matmul_peak measures), and back to
    back for `seconds` (median and slowest 1-second window, wall and CPU clocks)."""
    product()
    best = 0.0
    for _ in range(3):
        start = time.perf_counter()
        product()
        best = max(best, flops / (time.perf_counter() - start))
    windows_wall, windows_cpu = [], []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        wall0, cpu0 = _clocks()
        calls = 0
        while time.perf_counter() - wall0 < 1.0:
            product()
            calls += 1
        wall1, cpu1 = _clocks()
        windows_wall.append(calls * flops / (wall1 - wall0))
        windows_cpu.append(calls * flops / max(cpu1 - cpu0, 1e-9))
    return {"burst": best / 1e9, "sustained_median": statistics.median(windows_wall) / 1e9,
            "sustained_slowest": min(windows_wall) / 1e9, "sustained_cpu_median": statistics.median(windows_cpu) / 1e9,
            "windows": len(windows_wall)}


def probe_peak(threads: int, seconds: float, members: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    generator = torch.Generator().manual_seed(0)
    a, b = (torch.randn(2048, 2048, generator=generator) for _ in range(2))
    x = torch.randn(members, 60, 784, generator=generator)
    w = torch.randn(members, 784, 300, generator=generator)
    sys.path.insert(0, str(HERE))
    from flops import matmul_peak

    return {"threads": threads, "flops_matmul_peak": matmul_peak(threads) / 1e9,
            "square_2048": burst_and_sustained(lambda: a @ b, 2 * 2048**3, seconds),
            f"bmm_{members}x60x784x300": burst_and_sustained(lambda: torch.bmm(x, w), 2 * members * 60 * 784 * 300,
                                                             seconds)}


def probe_part(tree: Path, members: int, steps: int, threads: int, interop: int | None) -> dict:
    """One population part trained for `steps` steps (evaluation every 100) with `tree`'s code."""
    sys.path[:0] = [str(tree), str(tree / "benchmarks")]
    import torch

    torch.set_num_threads(threads)
    if interop is not None:
        torch.set_num_interop_threads(interop)
    import population_speed as ps
    from ticketlab.config import TrainConfig
    from ticketlab.training import population as population_package

    if os.environ.get("PROBE_GLIBC_DEFAULTS"):  # leave glibc's malloc as it is: no allocator setting
        for name, module in list(sys.modules.items()):
            if name.startswith("ticketlab.training") and hasattr(module, "keep_freed_memory"):
                module.keep_freed_memory = lambda: False
    spec = ps.WORKLOADS["lenet300_100"]
    data = ps.synthetic_data(spec)
    population_class = _classifier_population(population_package)
    spent = {"train_step": [0.0, 0.0, 0], "evaluate": [0.0, 0.0, 0]}  # wall s, CPU s, minor faults
    for name in spent:
        original = getattr(population_class, name)

        def timed(*args, _original=original, _name=name, **kwargs):
            faults0, (wall0, cpu0) = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, _clocks()
            try:
                return _original(*args, **kwargs)
            finally:
                wall1, cpu1 = _clocks()
                spent[_name][0] += wall1 - wall0
                spent[_name][1] += cpu1 - cpu0
                spent[_name][2] += resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults0

        setattr(population_class, name, timed)
    members_list = []
    for member in range(members):
        model = ps.make_model(spec, member)
        members_list.append(population_package.PopulationMember(model, ps.half_masks(model, member), data_seed=member))
    config = TrainConfig(optimizer="adam", lr=1.2e-3, batch_size=60, steps=f"{steps}it", eval_every="100it")
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    wall0, cpu0 = _clocks()
    population_package.train_population(members_list, data, config)
    wall1, cpu1 = _clocks()
    usage1 = resource.getrusage(resource.RUSAGE_SELF)
    weights = ps.weight_count(spec)
    train_flops = members * steps * 6 * weights * 60
    eval_flops = members * 2 * weights * ((steps // 100) * 5000 + 55000 + 10000 * 1.5)  # + final test, train sets
    return {
        "tree": str(tree), "members": members, "steps": steps, "threads": threads, "interop": interop,
        "wall_s": wall1 - wall0, "cpu_s": cpu1 - cpu0,
        "train_step_ms_cpu": 1e3 * spent["train_step"][1] / steps,
        "train_step_ms_wall": 1e3 * spent["train_step"][0] / steps,
        "train_gflops_cpu": train_flops / spent["train_step"][1] / 1e9,
        "train_step_minor_faults": spent["train_step"][2] / steps,
        "eval_gflops_cpu": eval_flops / spent["evaluate"][1] / 1e9,
        "eval_share_cpu": spent["evaluate"][1] / (cpu1 - cpu0),
        "rest_share_cpu": 1 - (spent["evaluate"][1] + spent["train_step"][1]) / (cpu1 - cpu0),
        "minor_faults": usage1.ru_minflt - usage0.ru_minflt,
        "voluntary_switches_per_step": (usage1.ru_nvcsw - usage0.ru_nvcsw) / steps,
        "involuntary_switches_per_step": (usage1.ru_nivcsw - usage0.ru_nivcsw) / steps,
    }


def _classifier_population(package):
    try:
        from ticketlab.training.population.classifier import ClassifierPopulation
        return ClassifierPopulation
    except ImportError:  # older layouts kept the class in one module
        return next(value for name, value in vars(package).items()
                    if isinstance(value, type) and hasattr(value, "train_step") and hasattr(value, "evaluate"))


def run_part_in_process(args, label: str, env_extra: dict, prefix: list[str], threads: int = 1,
                        interop: int | None = None, tree: Path | None = None) -> dict:
    command = [*prefix, sys.executable, __file__, "part", "--json", "--members", str(args.members), "--steps",
               str(args.steps), "--threads", str(threads), "--tree", str(tree or args.tree)]
    if interop is not None:
        command += ["--interop", str(interop)]
    env = os.environ | {"OMP_NUM_THREADS": str(threads)} | env_extra
    output = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    return {"label": label} | json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("probes", nargs="+", choices=("peak", "part", "variants", "trees"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--interop", type=int, default=None)
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each sustained peak measurement")
    parser.add_argument("--members", type=int, default=8)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--tree", type=Path, default=HERE.parent, help="the checkout whose code `part` runs")
    parser.add_argument("--old-tree", type=Path, default=None, help="`trees`: the checkout to compare with --tree")
    parser.add_argument("--variants", default=None, help="`variants`: comma-separated labels (default: all)")
    parser.add_argument("--json", action="store_true", help="print one JSON line (for the parent process)")
    args = parser.parse_args()
    if not args.json:
        print(f"# python benchmarks/efficiency_probe.py {' '.join(sys.argv[1:])}")
        print(f"# {os.cpu_count()} CPUs, load average at start {os.getloadavg()[0]:.2f}", flush=True)
    for probe in args.probes:
        if probe == "peak":
            result = probe_peak(args.threads, args.seconds, args.members)
        elif probe == "part":
            result = probe_part(args.tree.resolve(), args.members, args.steps, args.threads, args.interop)
        elif probe == "trees":
            result = [run_part_in_process(args, "old tree", {}, [], tree=args.old_tree),
                      run_part_in_process(args, "this tree", {}, [])]
        else:
            pin = ["taskset", "-c", "0"] if shutil.which("taskset") else []
            variants = {"default": ({}, [], 1, None), "MALLOC_ARENA_MAX=1": ({"MALLOC_ARENA_MAX": "1"}, [], 1, None),
                        "glibc defaults (no allocator setting)": ({"PROBE_GLIBC_DEFAULTS": "1"}, [], 1, None),
                        "1 interop thread": ({}, [], 1, 1), "pinned: taskset -c 0": ({}, pin, 1, None),
                        "2 threads": ({}, [], 2, None)}
            chosen = args.variants.split(",") if args.variants else list(variants)
            result = []
            for label in chosen:
                env_extra, prefix, threads, interop = variants[label]
                result.append(run_part_in_process(args, label, env_extra, prefix, threads, interop))
                print(json.dumps({"probe": "variant", "result": result[-1]}), flush=True)
        print(json.dumps({"probe": probe, "result": result}), flush=True)
    if not args.json:
        print(f"# load average at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
