"""benchmarks/method_comparison.py --quick through its main(): every registered method runs in one run directory,
the table's numbers equal a recomputation from that run's results.csv, the training cost of each method is the count
made here (IMP: the dense run and each round; the one-run methods: one training), both views are drawn, and the
command to reproduce is printed."""

import csv
import importlib

import pytest

from tests.test_reproduce_quick import _mnist1d_generated_once, _recomputed, _rows  # noqa: F401  (fixture)

TOTAL, REWIND = 20, 2  # the quick protocol: 20 iterations, rewinding to 10%


def test_quick_comparison_writes_the_table_both_views_and_the_command(tmp_path, one_thread, capsys):
    module = importlib.import_module("benchmarks.method_comparison")
    outputs = module.main(["--quick", "--out", str(tmp_path)])
    printed = capsys.readouterr().out
    from ticketlab.lottery.variants import variant_names, variant_short_label

    methods = module.methods()
    assert set(methods) == set(module.METHODS) & set(variant_names())  # rigl and set once registered
    for name in ("mlp_mnist1d_weights.png", "mlp_mnist1d_cost.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert outputs.figure == tmp_path / "mlp_mnist1d_weights.png"
    assert f"python -m benchmarks.method_comparison --quick --out {tmp_path}" in printed
    assert all(variant_short_label(name) in printed for name in methods)
    table = _rows(outputs.table_csv)
    for row in table:  # the table holds 6 significant digits
        source = _rows(tmp_path / "runs" / row["run"] / row["source"])
        wanted = dict(item.split("=", 1) for item in row["select"].split("&"))
        values = [float(line[row["metric"]]) for line in source
                  if all(line[column] == value for column, value in wanted.items())]
        expected = _recomputed(values)
        assert int(row["trials"]) == expected["trials"] == 2
        for column in ("mean", "std", "min", "max"):
            assert float(row[column]) == pytest.approx(expected[column], rel=1e-5, abs=1e-9), (row, column)
    steps = {(row["group"].split()[-1], int(row["select"].split("level=")[1])): float(row["mean"])
             for row in table if row["metric"] == "train_steps_total"}
    assert {group for group, _ in steps} == {"dense", *methods}
    for (method, level), mean in steps.items():
        chained = method in ("iterative_reset", "lr_rewind", "finetune")  # the dense run, then every round
        assert mean == (TOTAL + level * (TOTAL - REWIND) if chained else TOTAL), (method, level)
    with open(outputs.table_csv, newline="") as handle:
        assert {line["metric"] for line in csv.DictReader(handle)} == {
            "early_stop_test_accuracy", "train_steps_total", "train_flops_total"}
