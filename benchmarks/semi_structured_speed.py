"""N:M tickets on a GPU: a 2:4-pruned Linear layer as torch's semi-structured sparse tensor against the dense
product, fp16.

Each shape's weight is pruned 2:4 along the input dimension by ticketlab's own mask function
(`masks_from_scores(..., n_m=(2, 4))`, the pattern `--prune.n_m 2:4` trains), converted with
`torch.sparse.to_sparse_semi_structured`, and `F.linear(x, W)` is timed for the dense and the semi-structured
weight (CUDA events, median of `--repeats` after warm-up); the outputs are compared (fp16 tolerance). The shapes
are LeNet-300-100's hidden layer padded to the kernels' multiples of 64 (a ticket of this project's size) and
three transformer-sized layers, where the 2:4 kernels are meant to win. On a machine without CUDA it checks the
pattern only, says that nothing was timed, and exits 0.

Reproduce:  python benchmarks/semi_structured_speed.py --json semi_structured.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys

import torch
from torch.nn import functional as F

from ticketlab.pruning import masks_from_scores

SHAPES = ((320, 832, 4096), (4096, 4096, 4096), (11008, 4096, 4096), (4096, 11008, 4096))  # out, in, tokens


def two_four_weight(out_features: int, in_features: int, device: str) -> torch.Tensor:
    """A random fp16 weight with ticketlab's 2:4 magnitude mask applied (exactly 2 of every 4 inputs kept)."""
    generator = torch.Generator().manual_seed(out_features * 7 + in_features)
    weight = torch.randn(out_features, in_features, generator=generator)
    mask = masks_from_scores({"w": weight.abs()}, {"w": weight.numel() // 2}, n_m=(2, 4))["w"]
    if not (mask.view(-1, 4).sum(dim=1) == 2).all():
        raise AssertionError("the 2:4 mask does not keep exactly 2 of every 4")
    return (weight * mask).to(device, torch.float16)


def median_ms(function, repeats: int) -> float:
    for _ in range(3):
        function()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        function()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = parser.parse_args()
    report = {"status": "skipped: no CUDA", "rows": []}
    if not torch.cuda.is_available():
        two_four_weight(*SHAPES[0][:2], "cpu")
        print("semi_structured_speed: no CUDA device; the 2:4 pattern was checked, nothing was timed")
    else:
        report["status"] = "ok"
        report["device"] = torch.cuda.get_device_name()
        print(f"# {report['device']}, torch {torch.__version__}")
        print("| out x in | tokens | dense ms | 2:4 ms | speed-up | max abs diff |")
        print("| --- | ---: | ---: | ---: | ---: | ---: |")
        for out_features, in_features, tokens in SHAPES:
            dense = two_four_weight(out_features, in_features, "cuda")
            inputs = torch.randn(tokens, in_features, device="cuda", dtype=torch.float16)
            try:
                sparse = torch.sparse.to_sparse_semi_structured(dense)
                with torch.no_grad():
                    difference = (F.linear(inputs, sparse) - F.linear(inputs, dense)).abs().max().item()
                    dense_ms = median_ms(lambda: F.linear(inputs, dense), args.repeats)
                    sparse_ms = median_ms(lambda: F.linear(inputs, sparse), args.repeats)
            except (RuntimeError, NotImplementedError, ValueError) as error:  # kernels missing for this GPU/shape
                report["rows"].append({"shape": [out_features, in_features], "tokens": tokens, "error": str(error)})
                print(f"| {out_features} x {in_features} | {tokens} | failed: {str(error).splitlines()[0]} |")
                continue
            row = {"shape": [out_features, in_features], "tokens": tokens, "dense_ms": dense_ms,
                   "semi_structured_ms": sparse_ms, "speedup": dense_ms / sparse_ms, "max_abs_diff": difference}
            report["rows"].append(row)
            print(f"| {out_features} x {in_features} | {tokens} | {dense_ms:.3f} | {sparse_ms:.3f} | "
                  f"{row['speedup']:.2f}x | {difference:.3g} |", flush=True)
        if report["rows"] and all("error" in row for row in report["rows"]):
            report["status"] = "failed: no shape ran"
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=1)
    sys.exit(0 if report["status"] != "failed: no shape ran" else 1)


if __name__ == "__main__":
    main()
