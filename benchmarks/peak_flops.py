"""The machine's matmul peak, measured the way a long run sees it: sustained, not a burst.

`flops.matmul_peak` takes the best of a few single products (a burst of tens of milliseconds). A run of twenty
minutes meets the clock the machine holds under load for minutes, and on a shared or virtual machine whatever the
neighbours leave; `sustained_matmul_peak` runs products back to back for `seconds` and reports the median 1-second
window (and the slowest), which is the denominator a long run's "% of the FLOP bound" should use. On CUDA,
`device_matmul_peak` does the same with large products timed between synchronizations, in fp32 (TF32 off),
TF32 and fp16.

Reproduce:  python benchmarks/peak_flops.py --device cpu --threads 1 --seconds 20
            python benchmarks/peak_flops.py --device cuda --seconds 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch

DTYPES = {"fp32": torch.float32, "tf32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def _windows(product, flops_per_call: float, seconds: float, synchronize=lambda: None,
             window_s: float = 1.0) -> tuple[list[float], list[float]]:
    """FLOP/s of `product()` called back to back, one figure per `window_s` window, for `seconds` in all: by the
    wall clock, and by this process's CPU time (on a loaded machine: the speed of the CPU while it ran this)."""
    product()
    synchronize()
    rates, cpu_rates = [], []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or not rates:
        start, cpu_start, calls = time.perf_counter(), time.process_time(), 0
        while time.perf_counter() - start < window_s:
            product()
            calls += 1
            if calls % 8 == 0:
                synchronize()
        synchronize()
        rates.append(calls * flops_per_call / (time.perf_counter() - start))
        cpu_rates.append(calls * flops_per_call / max(time.process_time() - cpu_start, 1e-9))
    return rates, cpu_rates


def _figures(rates: list[float], cpu_rates: list[float]) -> dict:
    return {"median": statistics.median(rates), "slowest": min(rates), "fastest": max(rates), "windows": len(rates),
            "cpu_time_median": statistics.median(cpu_rates)}


def sustained_matmul_peak(threads: int | None = None, seconds: float = 20.0, size: int = 2048) -> dict:
    """CPU fp32 FLOP/s of size x size products for `seconds` at `threads` threads: median, slowest and fastest
    1-s window by the wall clock, and the median by CPU time (`cpu_time_median`: per thread, divide by threads)."""
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        generator = torch.Generator().manual_seed(0)
        a, b = torch.randn(size, size, generator=generator), torch.randn(size, size, generator=generator)
        rates = _windows(lambda: a @ b, 2.0 * size**3, seconds)
    finally:
        torch.set_num_threads(previous)
    return _figures(*rates)


def device_matmul_peak(device: str = "cuda", dtype: str = "fp32", seconds: float = 3.0, size: int = 8192) -> dict:
    """FLOP/s of size x size products on `device` in `dtype` ('fp32' with TF32 off, 'tf32', 'fp16', 'bf16')."""
    previous = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = dtype == "tf32"
    try:
        a = torch.randn(size, size, device=device, dtype=DTYPES[dtype])
        b = torch.randn(size, size, device=device, dtype=DTYPES[dtype])
        rates = _windows(lambda: a @ b, 2.0 * size**3, seconds,
                         synchronize=lambda: torch.cuda.synchronize(device), window_s=min(1.0, seconds / 3))
    finally:
        torch.backends.cuda.matmul.allow_tf32 = previous
    return _figures(*rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each measurement")
    parser.add_argument("--dtypes", default="fp32,tf32,fp16", help="CUDA: comma-separated of " + ", ".join(DTYPES))
    parser.add_argument("--json", default=None, help="also write the figures (FLOP/s) to this JSON file")
    args = parser.parse_args()
    if args.device == "cpu":
        results = {"cpu_fp32": sustained_matmul_peak(args.threads, args.seconds)}
        print(f"# {os.cpu_count()} CPUs, {torch.get_num_threads() if args.threads is None else args.threads} threads, "
              f"load average {os.getloadavg()[0]:.2f}")
    else:
        results = {f"{args.device}_{dtype}": device_matmul_peak(args.device, dtype, args.seconds)
                   for dtype in args.dtypes.split(",")}
        print(f"# {torch.cuda.get_device_name(args.device)}")
    for label, result in results.items():
        print(f"{label}: sustained {result['median'] / 1e12:.3f} TFLOP/s (median of {result['windows']} windows; "
              f"slowest {result['slowest'] / 1e12:.3f}, fastest {result['fastest'] / 1e12:.3f})")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=1)


if __name__ == "__main__":
    main()
