"""The summary of a `benchmarks/gpu_check.sh` run: each step's status and time, and the numbers its outputs hold.

Reads the results folder the script wrote (`steps.tsv`, one line per step: name, status, exit code, seconds,
note; the JSON files and logs of the steps) and writes `gpu_check_summary.md` and `gpu_check_summary.json` into
it. Standard library only (numpy and safetensors, if importable, to compare the NCCL job's weights with the one
process's), so it runs even when setting up the environment failed.

Usage:  python benchmarks/gpu_check_summary.py RESULTS_DIR
"""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path


def read_steps(results: Path) -> list[dict]:
    steps = []
    path = results / "steps.tsv"
    if path.exists():
        for line in path.read_text().splitlines():
            name, status, code, seconds, note = (line.split("\t") + [""] * 5)[:5]
            steps.append({"step": name, "status": status, "exit_code": code, "seconds": seconds, "note": note})
    return steps


def _json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def test_counts(path: Path) -> dict | None:
    """Counts (and the failed tests' names) from pytest's JUnit XML."""
    try:
        root = ElementTree.parse(path).getroot()
    except (OSError, ElementTree.ParseError):
        return None
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    counts = {key: sum(int(suite.get(key, 0)) for suite in suites) for key in ("tests", "failures", "errors", "skipped")}
    counts["passed"] = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    counts["failed_tests"] = [f"{case.get('classname')}::{case.get('name')}" for case in root.iter("testcase")
                              if case.find("failure") is not None or case.find("error") is not None]
    return counts


def weight_difference(first: Path, second: Path) -> float | None:
    """Largest |difference| between two safetensors state dicts (None if either is missing or unreadable)."""
    try:
        import numpy as np
        from safetensors.numpy import load_file

        a, b = load_file(str(first)), load_file(str(second))
        return max(float(np.abs(a[name].astype(np.float64) - b[name].astype(np.float64)).max()) for name in a)
    except Exception:  # noqa: BLE001 - a summary reports what it can
        return None


def ray_rows(log: Path) -> list[str]:
    try:
        text = log.read_text()
    except OSError:
        return []
    return [line for line in text.splitlines() if line.startswith(("| local", "| ray", "ray start-up", "populations:"))]


def summarize(results: Path) -> dict:
    summary = {"steps": read_steps(results), "cuda": _json(results / "cuda.json"),
               "tests": test_counts(results / "tests.xml"), "population": _json(results / "population.json"),
               "ddp_torchrun": _json(results / "ddp_torchrun.json"), "ddp_one_process": _json(results / "ddp_one.json"),
               "semi_structured": _json(results / "semi_structured.json"),
               "ray": ray_rows(results / "ray.log")}
    summary["ddp_max_weight_difference"] = weight_difference(results / "ddp_torchrun.safetensors",
                                                             results / "ddp_one.safetensors")
    return summary


def markdown(summary: dict) -> str:
    lines = ["# GPU check", ""]
    cuda = summary["cuda"] or {}
    if cuda:
        lines.append(f"torch {cuda.get('torch')} (CUDA {cuda.get('cuda_version')}), CUDA available: "
                     f"{cuda.get('cuda_available')}, devices: {cuda.get('device_count')} "
                     f"{', '.join(cuda.get('device_names', []))}")
    else:
        lines.append("torch was not probed (setting up the environment failed; see setup.log)")
    if cuda and not cuda.get("cuda_available"):
        lines.append("")
        lines.append("**CUDA is not available to this torch (a CPU wheel, or no driver): nothing was measured.**")
    lines += ["", "| step | status | exit | seconds | note |", "| --- | --- | ---: | ---: | --- |"]
    lines += [f"| {s['step']} | {s['status']} | {s['exit_code']} | {s['seconds']} | {s['note']} |"
              for s in summary["steps"]]
    tests = summary["tests"]
    if tests:
        lines += ["", f"CUDA tests: {tests['passed']} passed, {tests['failures'] + tests['errors']} failed, "
                      f"{tests['skipped']} skipped"]
        lines += [f"- failed: {name}" for name in tests["failed_tests"]]
    population = summary["population"]
    if population:
        peaks = ", ".join(f"{dtype} {rate / 1e12:.1f} TFLOP/s" for dtype, rate in population["peaks_flops_per_s"].items())
        lines += ["", f"Populations on {population['device']} (sustained matmul peak {peaks}):", "",
                  "| model | K | member-it/s | TFLOP/s | % fp32 peak | % TF32 peak |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
        for row in population["rows"]:
            tf32 = "-" if row["percent_tf32_peak"] is None else f"{row['percent_tf32_peak']:.1f}%"
            lines.append(f"| {row['model']} | {row['K']} | {row['member_iterations_per_s']:.0f} | "
                         f"{row['flops_per_s'] / 1e12:.2f} | {row['percent_fp32_peak']:.1f}% | {tf32} |")
        lines += [f"- {note}" for note in population["notes"]]
    for label, key in (("NCCL torchrun job", "ddp_torchrun"), ("one process", "ddp_one_process")):
        run = summary[key]
        if run:
            lines.append(f"\n{label}: LeNet-300-100 {run['steps']} steps, {run['iterations_per_s']:.1f} it/s on "
                         f"{run['device']}, world size {run['world_size']}, backend {run['backend']}")
    if summary["ddp_max_weight_difference"] is not None:
        lines.append(f"largest |weight difference| torchrun vs one process: {summary['ddp_max_weight_difference']:.3g}")
    if summary["ray"]:
        lines += ["", "Ray (num_gpus=1 a task):", ""] + summary["ray"]
    semi = summary["semi_structured"]
    if semi:
        lines += ["", f"2:4 semi-structured vs dense, fp16: {semi['status']}"]
        for row in semi["rows"]:
            if "error" in row:
                lines.append(f"- {row['shape'][0]} x {row['shape'][1]}, {row['tokens']} tokens: {row['error'][:200]}")
            else:
                lines.append(f"- {row['shape'][0]} x {row['shape'][1]}, {row['tokens']} tokens: dense "
                             f"{row['dense_ms']:.3f} ms, 2:4 {row['semi_structured_ms']:.3f} ms, "
                             f"{row['speedup']:.2f}x (max |diff| {row['max_abs_diff']:.3g})")
    return "\n".join(lines) + "\n"


def main() -> None:
    if len(sys.argv) != 2 or not Path(sys.argv[1]).is_dir():
        print("usage: python benchmarks/gpu_check_summary.py RESULTS_DIR", file=sys.stderr)
        sys.exit(2)
    results = Path(sys.argv[1])
    summary = summarize(results)
    (results / "gpu_check_summary.json").write_text(json.dumps(summary, indent=1))
    text = markdown(summary)
    (results / "gpu_check_summary.md").write_text(text)
    print(text, end="")


if __name__ == "__main__":
    main()
