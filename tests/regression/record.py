"""Record the expected numbers of every regression scenario: ``python -m tests.regression.record``.

Runs the whole scenario table (fast and slow) in a scratch directory and writes tests/regression/expected.json.
Re-run it only when a change of numbers is intended (and say why in the commit); the test
tests/regression/test_numbers_unchanged.py compares against the file. ``--twice`` records twice in fresh
directories and fails if the two differ (the fingerprints must be bit-stable run to run); ``--check`` compares
with the stored file instead of writing it; ``--only a,b`` limits to some scenarios (with --check).
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: python tests/regression/record.py
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.regression.scenarios import (  # noqa: E402
    EXPECTED_PATH, SCENARIOS, Workspace, differences, dump_expected, load_expected, numeric_platform, platform_path)


def record(names: list[str]) -> tuple[dict, dict]:
    """({scenario: fingerprint}, {scenario: seconds}) of a fresh run of `names` (and what they read)."""
    seconds = {}
    with tempfile.TemporaryDirectory(prefix="ticketlab-regression-") as scratch:
        workspace = Workspace(Path(scratch))
        for name in names:
            start = time.perf_counter()
            workspace.fingerprint(name)
            seconds[name] = round(time.perf_counter() - start, 1)
            print(f"  {name}: {seconds[name]} s", file=sys.stderr, flush=True)
        return {name: workspace.fingerprints[name] for name in names}, seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.regression.record", description=__doc__.split("\n")[0])
    parser.add_argument("--twice", action="store_true", help="record twice and fail if the two differ")
    parser.add_argument("--check", action="store_true", help="compare with expected.json instead of writing it")
    parser.add_argument("--only", help="comma-separated scenario names (default: all)")
    parser.add_argument("--output", type=Path, help="write here instead of expected.json (e.g. to diff two runs)")
    parser.add_argument("--platform-file", action="store_true",
                        help="write this machine's platform file (expected-<vendor>-<isa>-<torch>.json) instead of "
                             "expected.json: run it at a commit whose numbers are known good")
    args = parser.parse_args(argv)
    names = args.only.split(",") if args.only else [scenario.name for scenario in SCENARIOS]
    import torch

    fingerprints, seconds = record(names)
    failures = []
    if args.twice:
        again, _ = record(names)
        failures += [f"{name} (run 1 vs run 2): {line}" for name in names
                     for line in differences(fingerprints[name], again[name])]
    if args.check:
        expected = load_expected()
        failures += [f"{name}: {line}" for name in names
                     for line in (differences(expected[name], fingerprints[name]) if name in expected
                                  else ["not in expected.json"])]
    for line in failures:
        print(line, file=sys.stderr)
    if failures:
        return 1
    if not args.check:
        output = args.output or (platform_path(numeric_platform()) if args.platform_file else EXPECTED_PATH)
        if args.only and args.output is None:
            print("--only records a subset: expected.json is written only for the whole table", file=sys.stderr)
            return 2
        payload = {"about": "fingerprints of tests/regression/scenarios.py; written by python -m "
                            "tests.regression.record", "recorded_with": {"torch": torch.__version__,
                                                                         "python": platform.python_version(),
                                                                         "platform": numeric_platform()},
                   "scenarios": fingerprints}
        output.write_text(dump_expected(payload))
        print(f"wrote {output} ({len(fingerprints)} scenarios, {sum(seconds.values()):.0f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
