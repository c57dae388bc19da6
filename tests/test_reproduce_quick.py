"""Every benchmarks/reproduce script's --quick mode, through its main(): it writes its figure and table, and every
number of the table equals a recomputation from the rows of the run directory's own CSV it names."""

from __future__ import annotations

import csv
import importlib
import math
from pathlib import Path

import pytest

# every script, in the default suite so none can rot: ~40 s for the whole file on a lightly loaded 2-core machine
SCRIPTS = ["lth_fashion_mnist", "rewind_stability", "transfer_matrix", "language_model", "translation", "rl",
           "pruning_at_init", "early_bird"]


@pytest.fixture(scope="module", autouse=True)
def _mnist1d_generated_once():
    """MNIST-1D is generated on every load (~5 CPU-s, most of a quick mode's time): generate it once for the module
    and hand each load its own copy of the same seeded arrays, so the results are those of an ordinary load."""
    from ticketlab.data import mnist1d

    generate, cache = mnist1d.generate_mnist1d, {}

    def generated_once(seed: int = 42):
        if seed not in cache:
            cache[seed] = generate(seed)
        return {name: array.copy() for name, array in cache[seed].items()}

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(mnist1d, "generate_mnist1d", generated_once)
        yield


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _recomputed(values: list[float]) -> dict[str, float]:
    """Mean, sample standard deviation, min, max and count, computed here without the module under test."""
    count = len(values)
    mean = sum(values) / count
    std = math.sqrt(sum((value - mean) ** 2 for value in values) / (count - 1)) if count > 1 else 0.0
    return {"mean": mean, "std": std, "min": min(values), "max": max(values), "trials": count}


def _check_outputs(out: Path, outputs) -> None:
    assert outputs.figure == out / "figure.png" and outputs.figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert outputs.table_md.read_text().startswith("# ")
    table = _rows(outputs.table_csv)
    assert table
    for row in table:
        source = _rows(out / "runs" / row["run"] / row["source"])
        wanted = dict(item.split("=", 1) for item in row["select"].split("&"))
        members = [line for line in source if all(line[column] == value for column, value in wanted.items())]
        values = [float(line[row["metric"]]) for line in members if line[row["metric"]] not in ("", "nan")]
        assert values, row
        expected = _recomputed(values)
        assert int(row["trials"]) == expected["trials"] >= 1
        for column in ("mean", "std", "min", "max"):
            assert float(row[column]) == pytest.approx(expected[column], rel=1e-5, abs=1e-9), (row, column)
    assert any(int(row["trials"]) >= 2 for row in table)  # a spread over trials, not one run


def _run(name: str, out: Path):
    module = importlib.import_module(f"benchmarks.reproduce.{name}")
    return module.main(["--quick", "--out", str(out)])


@pytest.mark.parametrize("name", SCRIPTS)
def test_quick_mode_writes_a_table_that_matches_its_runs(name, tmp_path, one_thread):
    _check_outputs(tmp_path, _run(name, tmp_path))


def test_a_rerun_trains_nothing_and_keeps_the_results(tmp_path, one_thread):
    first = _run("language_model", tmp_path)
    results = sorted(tmp_path.glob("runs/*/results.csv"))
    before = {path: path.read_bytes() for path in tmp_path.glob("runs/*/trial_*/level_*/*/result.json")}
    second = _run("language_model", tmp_path)
    assert sorted(tmp_path.glob("runs/*/results.csv")) == results
    assert {path: path.read_bytes() for path in tmp_path.glob("runs/*/trial_*/level_*/*/result.json")} == before
    assert second.table_csv.read_bytes() == first.table_csv.read_bytes()
    assert second.wall_time_s < first.wall_time_s
