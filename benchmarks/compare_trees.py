"""Before and after in the same run: one benchmark, run alternately on two source trees.

A refactor must not change speed, and this machine's speed drifts from minute to minute, so the two versions are
measured in alternation (A, B, A, B, ...) within one invocation, and each round's figures are printed side by side.
The baseline tree is any checkout, e.g. `git worktree add --detach ../base <commit>`.

    python benchmarks/compare_trees.py --baseline ../base --rounds 2 -- benchmarks/one_job_speed.py --threads 1

The benchmark's own output is printed for each run; lines matching --keep (a regular expression, default: lines
holding a number) are gathered into the summary at the end.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]


def run_in(tree: Path, script: str, arguments: list[str]) -> tuple[float, str]:
    """(seconds, output) of `script` (a path relative to the tree) run with `tree` first on the import path."""
    environment = dict(os.environ, PYTHONPATH=str(tree))
    start = time.perf_counter()
    done = subprocess.run([sys.executable, str(tree / script), *arguments], cwd=tree, env=environment,
                          capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{script} failed in {tree} (exit {done.returncode}):\n{done.stderr[-2000:]}")
    return seconds, done.stdout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline", type=Path, required=True, help="the source tree to compare against")
    parser.add_argument("--candidate", type=Path, default=HERE, help="the tree under test (default: this one)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--keep", default=r"\d", help="regular expression of the output lines to summarize")
    parser.add_argument("benchmark", nargs=argparse.REMAINDER, help="-- SCRIPT [ARGS...] (relative to a tree)")
    options = parser.parse_args(argv)
    command = options.benchmark[1:] if options.benchmark[:1] == ["--"] else options.benchmark
    if not command:
        parser.error("name the benchmark script after --")
    script, arguments = command[0], command[1:]
    keep = re.compile(options.keep)
    trees = {"baseline": options.baseline.resolve(), "candidate": options.candidate.resolve()}
    summary: dict[str, list[str]] = {name: [] for name in trees}
    load = os.getloadavg()[0]
    for round_index in range(options.rounds):
        for name, tree in trees.items():
            seconds, output = run_in(tree, script, arguments)
            print(f"--- round {round_index + 1}, {name} ({tree}), {seconds:.1f} s", flush=True)
            print(output, flush=True)
            summary[name] += [f"round {round_index + 1}: {line.strip()}" for line in output.splitlines()
                              if keep.search(line)]
            summary[name].append(f"round {round_index + 1}: wall {seconds:.1f} s")
    print(f"=== summary (load average at start {load:.1f}, now {os.getloadavg()[0]:.1f})")
    for name, lines in summary.items():
        print(f"[{name}] {trees[name]}")
        print("\n".join(f"  {line}" for line in lines))
    print("reproduce: python benchmarks/compare_trees.py --baseline", options.baseline, "--rounds",
          options.rounds, "--", " ".join(command))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
