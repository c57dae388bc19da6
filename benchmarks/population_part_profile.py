"""Where a population part's time goes, as a `--workers 2` process trains it: K LeNet-300-100 members (default
8), 1 thread, Adam batch 60, 4,000 steps, evaluation every 100 (validation 5,000), the final test and training-set
evaluations; wall time split into training steps, evaluation and the rest, each with its FLOP/s against the
1-thread matmul peak measured in the same run. Random data of Fashion-MNIST's shape.

Reproduce:  python benchmarks/population_part_profile.py 8 4000
"""
import collections
import sys
import time

import torch

import population_speed as ps
from flops import matmul_peak
from ticketlab.training.population.classifier import ClassifierPopulation
from ticketlab.training.population import PopulationMember, train_population
from ticketlab.config import TrainConfig
torch.set_num_threads(1)
K = int(sys.argv[1]) if len(sys.argv) > 1 else 8
steps = int(sys.argv[2]) if len(sys.argv) > 2 else 4000
spec = ps.WORKLOADS["lenet300_100"]; data = ps.synthetic_data(spec)
acc = collections.defaultdict(float)
def wrap(name):
    orig = getattr(ClassifierPopulation, name)
    def timed(*a, **k):
        s = time.perf_counter()
        try: return orig(*a, **k)
        finally: acc[name] += time.perf_counter() - s
    setattr(ClassifierPopulation, name, timed)
wrap("train_step"); wrap("evaluate")
members = []
for k in range(K):
    m = ps.make_model(spec, k); members.append(PopulationMember(m, ps.half_masks(m, k), data_seed=k))
peak = matmul_peak(1)
cfg = TrainConfig(optimizer="adam", lr=1.2e-3, batch_size=60, steps=f"{steps}it", eval_every="100it")
s = time.perf_counter()
train_population(members, data, cfg)
wall = time.perf_counter() - s
W = ps.weight_count(spec)
train_fl = K * steps * 6 * W * 60
eval_fl = K * 2 * W * ((steps // 100) * 5000 + 55000 + 10000 * 1.5)
print(f"K={K}, {steps} steps, 1 thread, peak {peak/1e9:.1f} GF/s: wall {wall:.1f} s, whole {100*(train_fl+eval_fl)/wall/peak:.0f}% of peak")
for name, fl in (("train_step", train_fl), ("evaluate", eval_fl)):
    print(f"  {name:10s} {acc[name]:6.1f} s ({100*acc[name]/wall:.0f}% of wall), {fl/acc[name]/1e9:.1f} GF/s = {100*fl/acc[name]/peak:.0f}% of peak")
rest = wall - acc["train_step"] - acc["evaluate"]
print(f"  rest       {rest:6.1f} s ({100*rest/wall:.0f}% of wall)")
