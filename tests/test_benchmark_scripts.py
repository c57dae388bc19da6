"""The sparse-kernel benchmarks run as their docstrings say (`python benchmarks/NAME.py` from any directory), and
the sparse convolution they time computes what F.conv2d does."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("script", ["sparse_kernels.py", "population_sparse_product.py", "sparse_conv.py",
                                    "late_level_profile.py"])
def test_a_sparse_benchmark_runs_as_a_script_from_another_directory(script, tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--help"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert done.returncode == 0 and "usage:" in done.stdout, done.stderr[-2000:]


def test_sparse_convolution_agrees_with_conv2d_and_the_quick_table_prints(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "sparse_conv.py"), "--quick"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("command: OMP_NUM_THREADS=1 python benchmarks/sparse_conv.py")
    rows = [row for row in map(str.split, done.stdout.splitlines()) if row[:1] == ["resnet20"] and len(row) == 9]
    assert len(rows) == 2
    assert all(float(row[-1]) < 1e-5 for row in rows), done.stdout  # relative difference from F.conv2d


def test_the_compact_channel_benchmark_runs_quick_from_another_directory(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "channel_compact_speed.py"), "--quick"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("# python benchmarks/channel_compact_speed.py --quick")
    levels = [line.split("|")[1:-1] for line in done.stdout.splitlines() if line.startswith("| ") and "level" not in line
              and line.count("|") == 11]
    assert len(levels) == 3
    assert all(row[5].strip() == row[6].strip() for row in levels)  # the same early-stop iteration on both kernels


def test_the_late_level_profile_splits_both_paths_into_categories_that_sum_to_the_whole(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "late_level_profile.py"), "--members", "2",
                           "--steps", "20", "--eval-every", "10"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "reproduce: python benchmarks/late_level_profile.py --members 2" in done.stdout
    shares = [line.split("|")[2:4] for line in done.stdout.splitlines() if line.endswith("% |")]
    assert len(shares) == 8
    for column in range(2):
        assert abs(sum(float(row[column].strip(" %")) for row in shares) - 100) <= 4  # rounded shares
    assert "sparse vs dense:" in done.stdout
