"""Every number unchanged: each scenario of tests/regression/scenarios.py (tiny runs of every variant family and
every task, and transfer, stability, masks, export and cost over them) gives exactly the fingerprints stored in
tests/regression/expected.json: results and analysis CSV rows as written, tensor content hashes of every job's
mask and weights, result.json values and metrics.jsonl records.

A failure names the scenario and the file, tensor, row and column that changed. If the change is intended,
re-record with ``python -m tests.regression.record`` and say why in the commit.

Bit-exact results hold on one kind of machine: MKL and torch take other code paths on another processor vendor or
instruction set, which moves the last bits of the weights (masks and row counts stay). Each such platform has its
own file (expected-<vendor>-<isa>-<torch>.json, written by ``python -m tests.regression.record --platform-file``
at a commit whose numbers are known good); a machine without one compares with expected.json.

The whole table takes ~30 s of one CPU core (~85 s wall on a 2-core machine under a load of 6), so it runs in the
default suite; `pytest -k 'numbers_unchanged and rl'` runs part of it (scenarios run the finished runs they read).
"""

import pytest

from tests.regression.scenarios import (
    SCENARIOS, Workspace, differences, expected_file, load_expected, numeric_platform, recorded_platform)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """One scratch directory for the module: scenarios share the finished runs they read."""
    return Workspace(tmp_path_factory.mktemp("regression"))


@pytest.fixture(scope="module")
def expected():
    return load_expected()


@pytest.mark.parametrize("name", [pytest.param(scenario.name, marks=[pytest.mark.slow] if scenario.slow else [])
                                  for scenario in SCENARIOS])
def test_numbers_unchanged(workspace, expected, name):
    assert name in expected, f"scenario {name} is not in expected.json: run python -m tests.regression.record"
    changed = differences(expected[name], workspace.fingerprint(name))
    source = expected_file()
    assert not changed, (f"scenario {name}: numbers changed against {source.name} (recorded on "
                         f"{recorded_platform(source)}; this machine: {numeric_platform()}):\n  " + "\n  ".join(changed))


def test_every_scenario_is_recorded(expected):
    """expected.json and the table agree (a scenario dropped from the table leaves no stale entry behind)."""
    assert sorted(expected) == sorted(scenario.name for scenario in SCENARIOS)
