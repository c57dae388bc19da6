"""benchmarks/gpu_check.sh, checked where no GPU is: its dry run names every step, every Python entry it calls
accepts the flags it passes (read from the scripts' own argparse calls), bad arguments get one line and exit 2,
a machine whose torch cannot see CUDA gets a summary that says so and exit 3, and the summary writer turns a
results folder into the numbers it holds."""

from __future__ import annotations

import ast
import importlib.util
import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"
STEPS = {"probe", "tests", "population", "semi_structured", "torchrun_nccl", "one_process", "ray"}


def _run(*arguments: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *arguments], capture_output=True, text=True, timeout=120, env=env)


def _accepted_flags(script: Path) -> set[str]:
    """The option strings of every add_argument call in `script`."""
    flags = set()
    for node in ast.walk(ast.parse(script.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "add_argument":
            flags |= {arg.value for arg in node.args if isinstance(arg, ast.Constant) and str(arg.value).startswith("-")}
    return flags


def test_the_dry_run_names_every_step_and_passes_only_flags_the_scripts_accept(tmp_path):
    assert subprocess.run(["bash", "-n", str(SCRIPT)]).returncode == 0
    done = _run("--dry-run", "--out", str(tmp_path / "results"))
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "results").exists()  # a dry run writes nothing
    steps = {line.split()[1]: line.split(":", 1)[1] for line in done.stdout.splitlines() if line.startswith("STEP ")}
    assert set(steps) == STEPS
    checked = 0
    for name, command in steps.items():
        if name == "probe":  # python -c: no script
            continue
        words = shlex.split(command)
        if name == "tests":
            files = [word for word in words if word.startswith("tests/")]
            assert "tests/training/test_population.py" in files and "tests/pruning/test_n_m.py" in files
            assert all((ROOT / file).exists() for file in files) and words[words.index("-k") + 1] == "cuda"
            continue
        script = next(word for word in words if word.startswith("benchmarks/") and word.endswith(".py"))
        passed = {word.split("=")[0] for word in words[words.index(script) + 1:] if word.startswith("--")}
        assert passed <= _accepted_flags(ROOT / script), (name, passed - _accepted_flags(ROOT / script))
        checked += 1
    assert checked == 5


@pytest.mark.parametrize("arguments, message", [
    (["--budget-s", "5"], "--budget-s '5' must be a whole number of seconds >= 60"),
    (["--bogus"], "unknown argument '--bogus' (allowed: --out DIR, --budget-s SECONDS, --dry-run)"),
    (["--out"], "--out needs a folder"),
])
def test_bad_arguments_get_one_line_and_exit_2(arguments, message):
    done = _run(*arguments)
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [f"gpu_check.sh: error: {message}"]


def test_a_torch_without_cuda_is_said_in_the_summary_and_stops(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the script would run its measurements")
    done = _run("--out", str(tmp_path / "results"), env={"PYTHON": sys.executable, "PATH": "/usr/bin:/bin"})
    assert done.returncode == 3, done.stdout + done.stderr
    summary = (tmp_path / "results" / "gpu_check_summary.md").read_text()
    assert "**CUDA is not available to this torch" in summary and "| probe | failed | 3 |" in summary
    assert json.loads((tmp_path / "results" / "gpu_check_summary.json").read_text())["cuda"]["cuda_available"] is False
    assert not (tmp_path / "results" / "tests.log").exists()  # nothing past the probe ran


def _summary_module():
    spec = importlib.util.spec_from_file_location("gpu_check_summary", ROOT / "benchmarks" / "gpu_check_summary.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_summary_holds_the_numbers_of_the_results_folder(tmp_path):
    (tmp_path / "steps.tsv").write_text("probe\tok\t0\t3\tCUDA available\ntests\tfailed\t1\t80\t1 failed\n"
                                        "ray\tskipped\t\t0\tout of time (budget 470s)\n")
    (tmp_path / "cuda.json").write_text(json.dumps({"torch": "2.13.0", "cuda_version": "12.8", "cuda_available": True,
                                                    "device_count": 1, "device_names": ["NVIDIA H200"]}))
    (tmp_path / "tests.xml").write_text(
        '<testsuites><testsuite tests="5" failures="1" errors="0" skipped="1">'
        '<testcase classname="tests.a" name="test_x[cuda]"><failure/></testcase></testsuite></testsuites>')
    rows = [{"model": "lenet", "K": 256, "member_iterations_per_s": 51200.0, "flops_per_s": 4.0e12,
             "percent_fp32_peak": 8.0, "percent_tf32_peak": None, "long_run_s": 1.0}]
    (tmp_path / "population.json").write_text(json.dumps({"device": "NVIDIA H200", "peaks_flops_per_s": {
        "fp32": 5.0e13, "tf32": 4.0e14}, "rows": rows, "notes": ["conv2: stopped after K=64"]}))
    module = _summary_module()
    summary = module.summarize(tmp_path)
    assert summary["tests"] == {"tests": 5, "failures": 1, "errors": 0, "skipped": 1, "passed": 3,
                                "failed_tests": ["tests.a::test_x[cuda]"]}
    text = module.markdown(summary)
    assert "CUDA tests: 3 passed, 1 failed, 1 skipped" in text and "- failed: tests.a::test_x[cuda]" in text
    assert "| lenet | 256 | 51200 | 4.00 | 8.0% | - |" in text and "fp32 50.0 TFLOP/s" in text
    assert "| ray | skipped |  | 0 | out of time (budget 470s) |" in text
    assert "- conv2: stopped after K=64" in text


@pytest.mark.slow
def test_the_python_entries_run_on_a_cpu(tmp_path):
    """Smoke runs of the GPU benchmarks on the CPU (tiny sizes): they parse their flags and write their JSON."""
    benchmarks = ROOT / "benchmarks"
    env = {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    subprocess.run([sys.executable, "gpu_population_speed.py", "--device", "cpu", "--models", "lenet", "--sizes",
                    "1,2", "--steps", "2,4", "--peak-seconds", "0.2", "--json", str(tmp_path / "population.json")],
                   cwd=benchmarks, env=env, check=True, capture_output=True, timeout=300)
    rows = json.loads((tmp_path / "population.json").read_text())["rows"]
    assert [row["K"] for row in rows] == [1, 2] and all(row["member_iterations_per_s"] > 0 for row in rows)
    subprocess.run([sys.executable, "semi_structured_speed.py", "--json", str(tmp_path / "semi.json")],
                   cwd=benchmarks, env=env, check=True, capture_output=True, timeout=120)
    assert json.loads((tmp_path / "semi.json").read_text())["status"] == "skipped: no CUDA"
    subprocess.run([sys.executable, "peak_flops.py", "--seconds", "0.5", "--threads", "1", "--json",
                    str(tmp_path / "peak.json")], cwd=benchmarks, env=env, check=True, capture_output=True, timeout=120)
    assert json.loads((tmp_path / "peak.json").read_text())["cpu_fp32"]["median"] > 0
