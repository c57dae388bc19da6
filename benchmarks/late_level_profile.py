"""Where a late IMP level's time goes on sparse kernels, and what bounds it: the torch profiler over one population
part of the seed experiment's protocol (LeNet-300-100, Adam, batch 60, validation of 5,000 every 100 steps), K
members at one percent of weights remaining, on dense and on sparse kernels in the same run, one thread.

For each path it prints CPU time per step and its split into categories of operators (the products, the
optimizer, the exact-mask step, gathers and scatters of the kept values, copies, fills, the rest), then the
arithmetic floor: the step's FLOPs (6 x weights x batch, kept weights only on the sparse path, plus the
validation passes' share) at the 1-thread matmul peak measured in the same run. What is above the floor is what
the kernels cost beyond their arithmetic. Random data of Fashion-MNIST's shape and random masks (speed does not
depend on the values).

Reproduce:  python benchmarks/late_level_profile.py [--members 8] [--remaining 3.6] [--steps 300]
"""

from __future__ import annotations

import argparse
import collections
import time

import torch
from torch.profiler import ProfilerActivity, profile

import population_speed as ps
from flops import matmul_peak

CATEGORIES = {  # operator -> category; the rest is "other"
    "aten::addmm": "products", "aten::mm": "products", "aten::bmm": "products", "aten::baddbmm": "products",
    "aten::sparse_sampled_addmm": "products", "aten::_fused_adam_": "optimizer (Adam, all weights)",
    "aten::mul_": "exact-mask step (all weights)", "aten::index_select": "gather kept values",
    "aten::index_copy_": "scatter kept gradients", "aten::copy_": "copies (layouts, batches)",
    "aten::fill_": "fills (zeroed gradients)", "aten::zero_": "fills (zeroed gradients)",
}
SHORT_RUN = 10  # steps of the run whose time is subtracted
SETUP = ("aten::topk", "aten::uniform_", "aten::normal_", "aten::_index_put_impl_")
CATEGORY_ORDER = ("products", "optimizer (Adam, all weights)", "exact-mask step (all weights)", "gather kept values",
                  "scatter kept gradients", "copies (layouts, batches)", "fills (zeroed gradients)", "other")


def profile_path(kernels: str, members: int, remaining: float, steps: int, eval_every: int) -> tuple[float, dict]:
    """CPU seconds per step (evaluation included, no profiler) and each category's share of the profiled self CPU
    time. The profiler's own cost per operator inflates the small ones, so the step time comes from a run
    without it."""
    spec = ps.WORKLOADS["lenet300_100"]
    data = ps.synthetic_data(spec)
    ps.population_run(spec, data, members, 10, 10_000, remaining, kernels)  # warm-up
    timed = {}
    for count in (steps + SHORT_RUN, SHORT_RUN):  # the difference leaves the members' setup (masks, init) out
        start = time.process_time()
        ps.population_run(spec, data, members, count, eval_every, remaining, kernels)
        timed[count] = time.process_time() - start
    seconds = timed[steps + SHORT_RUN] - timed[SHORT_RUN]
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        ps.population_run(spec, data, members, steps, eval_every, remaining, kernels)
    by_category = collections.Counter()
    for event in prof.key_averages():
        if event.key in SETUP:  # the members' masks and initialization, not the steps
            continue
        by_category[CATEGORIES.get(event.key, "other")] += event.self_cpu_time_total
    total = sum(by_category.values())
    return seconds / steps, {name: value / total for name, value in by_category.items()}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=8, help="population size (a --workers 2 part of 15-16)")
    parser.add_argument("--remaining", type=float, default=3.6, help="percent of weights remaining")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--eval-every", type=int, default=100)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    remaining = args.remaining / 100
    spec = ps.WORKLOADS["lenet300_100"]
    weights = ps.weight_count(spec)
    validation = spec["sizes"][1]
    peak = matmul_peak(1, clock=time.process_time)
    print(f"late_level_profile: {args.members} LeNet-300-100 members at {args.remaining}% remaining, {args.steps} "
          f"steps, validation every {args.eval_every}; 1 thread, matmul peak {peak / 1e9:.1f} GFLOP/s (this run)")
    print(f"reproduce: python benchmarks/late_level_profile.py --members {args.members} --remaining {args.remaining} "
          f"--steps {args.steps}")
    results = {kernels: profile_path(kernels, args.members, remaining, args.steps, args.eval_every)
               for kernels in ("dense", "sparse")}
    print(f"\n| K={args.members}, share of profiled CPU time | " + " | ".join(results) + " |")
    print("|---|" + "---|" * len(results))
    for category in CATEGORY_ORDER:
        print(f"| {category} | " + " | ".join(f"{100 * split.get(category, 0.0):.0f}%" for _, split in results.values())
              + " |")
    print("| **CPU ms per step (unprofiled)** | " + " | ".join(f"**{1e3 * step:.2f}**" for step, _ in results.values())
          + " |")
    for kernels, (step, _) in results.items():
        kept = weights * (remaining if kernels == "sparse" else 1.0)
        flops = args.members * (6 * kept * spec["batch"] + 2 * kept * validation / args.eval_every)
        floor = flops / peak
        print(f"{kernels}: arithmetic floor {1e3 * floor:.2f} ms a step ({flops / 1e9:.2f} GFLOP at the peak); "
              f"measured {step / floor:.1f}x the floor")
    dense_step, sparse_step = results["dense"][0], results["sparse"][0]
    print(f"sparse vs dense: {dense_step / sparse_step:.2f}x")


if __name__ == "__main__":
    main()
