"""Every number unchanged: each scenario of tests/regression/scenarios.py (tiny runs of every variant family and
every task, and transfer, stability, masks, export and cost over them) gives exactly the fingerprints stored in
tests/regression/expected.json: results and analysis CSV rows as written, tensor content hashes of every job's
mask and weights, result.json values and metrics.jsonl records.

A failure names the scenario and the file, tensor, row and column that changed. If the change is intended,
re-record with ``python -m tests.regression.record`` and say why in the commit.

The whole table takes ~30 s of one CPU core (~85 s wall on a 2-core machine under a load of 6), so it runs in the
default suite; `pytest -k 'numbers_unchanged and rl'` runs part of it (scenarios run the finished runs they read).
"""

import pytest

from tests.regression.scenarios import SCENARIOS, Workspace, differences, load_expected


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
    assert not changed, f"scenario {name}: numbers changed:\n  " + "\n  ".join(changed)


def test_every_scenario_is_recorded(expected):
    """expected.json and the table agree (a scenario dropped from the table leaves no stale entry behind)."""
    assert sorted(expected) == sorted(scenario.name for scenario in SCENARIOS)
