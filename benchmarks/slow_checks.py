"""The checks kept out of the default suite (`pytest -m slow`): run them, and time them against the default suite's
slowest checks measured in the same run, so a slow check that has become cheap (or a default one that has become
dear) shows.

    python -m benchmarks.slow_checks            # the slow checks, then the default suite's 15 slowest
    python -m benchmarks.slow_checks --only-slow

Prints the command, the load average before and after, each check's time and the totals; exits 1 if a check
failed. Torch threads as in the suite (pytest's own process; the checks start their worker processes themselves).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DURATION = re.compile(r"^\s*([0-9.]+)s (call|setup|teardown)\s+(\S+)")


def run_pytest(marker: str, durations: int) -> tuple[int, float, list[tuple[float, str]]]:
    """(exit status, wall seconds, [(seconds, phase and test id)]) of `pytest -m marker` from the repository."""
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", marker,
               f"--durations={durations}", "--durations-min=1"]
    print("$", " ".join(command), flush=True)
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - started
    timings = []
    for line in done.stdout.splitlines():
        match = DURATION.match(line)
        if match:
            timings.append((float(match.group(1)), f"{match.group(2)} {match.group(3)}"))
    summary = next((line for line in reversed(done.stdout.splitlines())
                    if " in " in line and (" passed" in line or " failed" in line)), "")
    print(f"  {summary.strip()}")
    if done.returncode not in (0, 5):  # 5: nothing collected
        print(done.stdout[-4000:], done.stderr[-2000:], sep="\n")
    return done.returncode, wall, timings


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only-slow", action="store_true", help="leave out the default suite's timing")
    args = parser.parse_args(argv)
    print(f"load average before: {' '.join(f'{value:.2f}' for value in os.getloadavg())}")
    failed = False
    for marker in ("slow",) if args.only_slow else ("slow", "not slow"):
        code, wall, timings = run_pytest(marker, 15)
        failed = failed or code not in (0, 5)
        print(f"  -m {marker!r}: {wall:.0f} s wall; slowest:")
        for seconds, test in timings[:15]:
            print(f"    {seconds:7.1f} s  {test}")
    print(f"load average after: {' '.join(f'{value:.2f}' for value in os.getloadavg())}")
    print("reproduce: python -m benchmarks.slow_checks")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
