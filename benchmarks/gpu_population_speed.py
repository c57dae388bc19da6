"""Population training speed on a GPU: LeNet-300-100 and Conv-2, K = 1..256 stacked members, members/s and % of
the GPU's matmul peak measured in the same run.

For each model and K: K members with their own seeds, 50% random masks and data orders are trained by
`train_population` (Adam, batch 60, no evaluation inside the timed window) on random data of the dataset's shape
(speed does not depend on the values). Each K is trained twice, for `--steps` SHORT and LONG batched steps, and
the rate is taken from the difference (start-up, stacking and the first steps' kernel selection cancel):
member-iterations/s = K x (LONG - SHORT) / (t_LONG - t_SHORT). FLOPs are counted as the CPU benchmarks count them
(6 x weights x examples per training step, conv weights once per output position: `flops.forward_flops`) and set
against the peak of large products measured first (`peak_flops.device_matmul_peak`): fp32 with TF32 off, and
TF32. Precision in training is torch's default: matmuls (the LeNet populations) in strict fp32, cuDNN
convolutions (Conv-2) with TF32 allowed; so LeNet's share is of the fp32 peak, Conv-2's is printed against both.
A K that runs out of memory, or a model whose next K would pass `--budget-s`, ends that model's rows (said so).

Reproduce:  python benchmarks/gpu_population_speed.py --device cuda --json gpu_population.json
Smoke test on a CPU: python benchmarks/gpu_population_speed.py --device cpu --sizes 1,2 --steps 2,4 --models lenet
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time

import torch

from flops import forward_flops
from peak_flops import device_matmul_peak, sustained_matmul_peak
from ticketlab.config import TrainConfig
from ticketlab.data.splits import DataSplits
from ticketlab.models import build_model, initialize
from ticketlab.pruning import keep_top, prunable_weights, random_scores
from ticketlab.training.bookkeeping import TrainingInterrupted
from ticketlab.training.population import PopulationMember, train_population

MODELS = {
    "lenet": dict(model="lenet300_100", shape=(1, 28, 28), sizes=(55000, 5000, 10000), lr=1.2e-3),
    "conv2": dict(model="conv2", shape=(3, 32, 32), sizes=(5000, 1000, 1000), lr=2e-4),
}
BATCH = 60


def synthetic_data(shape: tuple[int, ...], sizes: tuple[int, int, int], device: torch.device) -> DataSplits:
    generator = torch.Generator().manual_seed(0)

    def split(count):
        return torch.rand(count, *shape, generator=generator), torch.randint(0, 10, (count,), generator=generator)

    return DataSplits(*split(sizes[0]), *split(sizes[1]), *split(sizes[2]), num_classes=10).to(device)


def members_of(spec: dict, count: int, made: dict) -> list[PopulationMember]:
    """`count` members (seeds 0..count-1), each a fresh copy of a model and mask made once per seed into `made`
    (initializing 256 Conv-2 networks again for every K would cost more than training them)."""
    members = []
    for seed in range(count):
        if seed not in made:
            model = initialize(build_model(spec["model"], spec["shape"], 10), "glorot_normal", seed)
            weights = prunable_weights(model)
            masks = keep_top(random_scores(weights, seed=seed), {name: w.numel() // 2 for name, w in weights.items()})
            made[seed] = (model, masks)
        model, masks = made[seed]
        members.append(PopulationMember(copy.deepcopy(model), masks, data_seed=seed))
    return members


def timed_steps(spec: dict, data: DataSplits, count: int, steps: int, device: torch.device, made: dict) -> float:
    """Seconds to set up `count` members and train them `steps` batched steps (synchronized at both ends)."""
    members = members_of(spec, count, made)
    config = TrainConfig(optimizer="adam", lr=spec["lr"], batch_size=BATCH, steps=f"{10 * steps}it",
                         eval_every=f"{10 * steps}it")
    _synchronize(device)
    start = time.perf_counter()
    try:
        train_population(members, data, config, stop_after_iterations=steps)
    except TrainingInterrupted:
        pass
    _synchronize(device)
    return time.perf_counter() - start


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _out_of_memory(error: BaseException) -> bool:
    return isinstance(error, getattr(torch.cuda, "OutOfMemoryError", ())) or "out of memory" in str(error)


def measure_peaks(device: torch.device, seconds: float) -> dict[str, float]:
    """FLOP/s: the device's sustained fp32 (and on CUDA, TF32) matmul peak."""
    if device.type == "cuda":
        return {dtype: device_matmul_peak(str(device), dtype, seconds)["median"] for dtype in ("fp32", "tf32")}
    return {"fp32": sustained_matmul_peak(None, seconds)["median"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated, of: " + ", ".join(MODELS))
    parser.add_argument("--sizes", default="1,2,4,8,16,32,64,128,256", help="population sizes K")
    parser.add_argument("--steps", default="10,30", help="SHORT,LONG batched steps (the rate is their difference)")
    parser.add_argument("--peak-seconds", type=float, default=3.0)
    parser.add_argument("--budget-s", type=float, default=120.0, help="per model: stop before a K would pass this")
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("gpu_population_speed: CUDA is not available to this torch; nothing measured", file=sys.stderr)
        sys.exit(3)
    short, long = (int(text) for text in args.steps.split(","))
    sizes = [int(text) for text in args.sizes.split(",")]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{os.cpu_count()} CPUs"
    peaks = measure_peaks(device, args.peak_seconds)
    print(f"# torch {torch.__version__}, {name}; sustained matmul peak: "
          + ", ".join(f"{dtype} {rate / 1e12:.2f} TFLOP/s" for dtype, rate in peaks.items()), flush=True)
    print("| model | K | member-it/s | TFLOP/s | % fp32 peak | % TF32 peak | s (long run) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    rows, notes = [], []
    for label in args.models.split(","):
        spec = MODELS[label]
        data = synthetic_data(spec["shape"], spec["sizes"], device)
        training_per_example = 3.0 * forward_flops(build_model(spec["model"], spec["shape"], 10), spec["shape"])
        spent, this_k, made = 0.0, 0.0, {}
        for count in sizes:
            try:
                started = time.perf_counter()
                short_s = timed_steps(spec, data, count, short, device, made)
                long_s = timed_steps(spec, data, count, long, device, made)
                this_k = time.perf_counter() - started
                spent += this_k
            except (RuntimeError, MemoryError) as error:
                if not _out_of_memory(error):
                    raise
                notes.append(f"{label}: K={count} ran out of memory; larger K not tried")
                break
            finally:
                if device.type == "cuda":
                    torch.cuda.empty_cache()
            if long_s > short_s:
                rate = count * (long - short) / (long_s - short_s)
            else:  # noise larger than the difference (tiny step counts): the long run's own rate, set-up included
                rate = count * long / long_s
                notes.append(f"{label}: K={count} timed from the long run alone (no difference to take)")
            achieved = rate * BATCH * training_per_example
            row = {"model": label, "K": count, "member_iterations_per_s": rate, "flops_per_s": achieved,
                   "percent_fp32_peak": 100 * achieved / peaks["fp32"],
                   "percent_tf32_peak": 100 * achieved / peaks["tf32"] if "tf32" in peaks else None,
                   "long_run_s": long_s}
            rows.append(row)
            tf32 = f"{row['percent_tf32_peak']:.1f}%" if row["percent_tf32_peak"] is not None else "-"
            print(f"| {label} | {count} | {rate:.0f} | {achieved / 1e12:.3f} | {row['percent_fp32_peak']:.1f}% | "
                  f"{tf32} | {long_s:.2f} |", flush=True)
            if spent + 2 * this_k > args.budget_s and count != sizes[-1]:  # the next K costs about twice this one
                notes.append(f"{label}: stopped after K={count} (the next K would pass --budget-s {args.budget_s:g})")
                break
    for note in notes:
        print(f"# {note}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"device": name, "torch": torch.__version__, "peaks_flops_per_s": peaks, "rows": rows,
                       "notes": notes}, handle, indent=1)


if __name__ == "__main__":
    main()
