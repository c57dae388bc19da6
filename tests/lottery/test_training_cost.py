"""The training cost of each result (results.csv's train_steps_total and train_flops_total) against a count made
here from the network's shape: 3 x forward FLOPs (2 per kept weight of an MLP) x batch size x steps, for every job
that led to the result (IMP: the dense run and each round; one-shot: the dense run and one retraining; at init:
its own training and the dense steps to θk; gmp: one run, integrated over the cubic schedule recomputed here).
Old results.csv files without the columns are still read and reported, and a rerun adds the columns."""

import csv
import json
import shutil
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from ticketlab import cli
from ticketlab.api import find_tickets
from ticketlab.config import ExperimentConfig, ModelConfig, PruneConfig, TrainConfig
from ticketlab.lottery.results_csv import COST_COLUMNS, read_results
from ticketlab.lottery.training_cost import ForwardCost, _forward_flops, forward_cost
from ticketlab.report.cost_figure import has_training_cost
from ticketlab.report.report import read_run_results
from ticketlab.report.results import summarize_results

TOTAL, REWIND, FINETUNE, BATCH = 20, 2, 10, 50
T0, T_END, EVERY, S_I = 2, 12, 3, 0.1
SIZES = (24 * 16, 16 * 10)  # the MLP 24-16-10 of the tiny data
KEPT = {0: SIZES, 1: (192, 80), 2: (96, 40)}  # rate 0.5 a round in every layer
DST_EVERY = 4  # RigL's dense gradient at steps 4, 8, 12 (before prune.dst_end, 3/4 of the 20 steps)
VARIANTS = ("iterative_reset", "oneshot_reset", "lr_rewind", "finetune", "gmp", "snip", "rigl", "set")


def _config():
    return ExperimentConfig(
        model=ModelConfig(name="mlp", hidden=(16,)),
        train=TrainConfig(optimizer="sgd", lr=0.1, momentum=0.9, batch_size=BATCH, steps=f"{TOTAL}it",
                          eval_every="10it"),
        prune=PruneConfig(rate=0.5, output_rate=0.5, levels=2, rewind=f"{REWIND}it", finetune_steps=f"{FINETUNE}it",
                          gmp_start=f"{T0}it", gmp_end=f"{T_END}it", gmp_every=f"{EVERY}it",
                          gmp_initial_sparsity=S_I, dst_every=f"{DST_EVERY}it"),
        variants=VARIANTS, trials=1)


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_data_for_module, one_thread_for_module):
    root = tmp_path_factory.mktemp("cost")
    return find_tickets(_config(), root=root, data=tiny_data_for_module, progress=False, report=False)


def _step_flops(kept) -> int:
    return 3 * 2 * sum(kept) * BATCH  # forward + two backward passes, 2 FLOPs per multiply-accumulate


def _gmp_flops(level: int) -> int:
    """One run: dense before t0, then at each update t0, t0 + Δt, ... and t_end each layer keeps
    n - round(s_t n) on the cubic s_t = s_f + (s_i - s_f)(1 - (t - t0)/(t_end - t0))^3 until the next update."""
    updates = [*range(T0, T_END, EVERY), T_END]
    total, kept = 0, SIZES
    for step in range(TOTAL):
        if step in updates:
            progress = (step - T0) / (T_END - T0)
            kept = tuple(size - round(size * (final + (min(S_I, final) - final) * (1 - progress) ** 3))
                         for size, final in ((size, 1 - keep / size) for size, keep in zip(SIZES, KEPT[level])))
        total += _step_flops(kept)
    return total


def _expected(variant: str, level: int) -> tuple[int, int]:
    dense = (TOTAL, TOTAL * _step_flops(SIZES))
    if level == 0:
        return dense
    retrain = TOTAL - REWIND
    if variant in ("iterative_reset", "lr_rewind"):  # the dense run and every round up to the level
        return (dense[0] + level * retrain, dense[1] + sum(retrain * _step_flops(KEPT[l]) for l in range(1, level + 1)))
    if variant == "oneshot_reset":
        return dense[0] + retrain, dense[1] + retrain * _step_flops(KEPT[level])
    if variant == "finetune":
        return (dense[0] + level * FINETUNE,
                dense[1] + sum(FINETUNE * _step_flops(KEPT[l]) for l in range(1, level + 1)))
    if variant == "snip":  # its own training, and the dense steps that made θk
        return TOTAL, REWIND * _step_flops(SIZES) + retrain * _step_flops(KEPT[level])
    assert variant == "gmp"
    return TOTAL, _gmp_flops(level)


def test_every_row_costs_every_training_that_led_to_it(run):
    rows = read_results(run.results_csv)
    assert {(row["variant"], row["level"]) for row in rows} == {(v, l) for v in VARIANTS for l in range(3)}
    for row in rows:
        if row["variant"] in ("rigl", "set"):
            continue  # ERK layer counts: test_dynamic_sparse_training_pays_its_one_run_and_rigl_its_dense_gradients
        assert row["weights_remaining_percent"] == pytest.approx(100 * sum(KEPT[row["level"]]) / sum(SIZES))
        steps, flops = _expected(row["variant"], row["level"])
        assert (row["train_steps_total"], row["train_flops_total"]) == (steps, flops), row
    # the text is integral (no float formatting of counts)
    with open(run.results_csv, newline="") as handle:
        assert all(cell.isdigit() for line in csv.DictReader(handle) for cell in (line[c] for c in COST_COLUMNS))


def test_dynamic_sparse_training_pays_its_one_run_and_rigl_its_dense_gradients(run):
    """One run at the mask's fixed layer counts; RigL's three updates each take the weight gradient densely:
    2 f_S + f_D instead of 3 f_S per example (Evci et al. 2020, App. H)."""
    rows = {(row["variant"], row["level"]): row for row in read_results(run.results_csv)}
    updates = len(range(DST_EVERY, TOTAL * 3 // 4, DST_EVERY))
    assert updates == 3
    for level in range(3):
        job = "dense" if level == 0 else "rigl"  # level 0 of every method is the dense run
        layers = json.loads((run.run_dir / "trial_0" / f"level_{level:02d}" / job / "result.json").read_text())
        kept = [remaining for remaining, _ in layers["layer_remaining"].values()]
        assert sum(kept) == pytest.approx(sum(KEPT[level]), abs=2)  # the IMP level's density, spread by ERK
        sparse = TOTAL * _step_flops(kept)
        assert (rows["set", level]["train_steps_total"], rows["set", level]["train_flops_total"]) == (TOTAL, sparse)
        dense_gradients = updates * BATCH * 2 * (sum(SIZES) - sum(kept))
        assert rows["rigl", level]["train_flops_total"] == sparse + dense_gradients
        assert (dense_gradients > 0) == (level > 0)


def test_a_results_csv_without_the_cost_columns_is_read_reported_and_rewritten(run, tmp_path, tiny_data_for_module):
    copy = tmp_path / run.run_dir.name
    shutil.copytree(run.run_dir, copy)
    with open(copy / "results.csv", newline="") as handle:
        lines = list(csv.reader(handle))
    keep = [index for index, column in enumerate(lines[0]) if column not in COST_COLUMNS]
    with open(copy / "results.csv", "w", newline="") as handle:
        csv.writer(handle, lineterminator="\n").writerows([[line[i] for i in keep] for line in lines])
    rows = read_run_results(copy)  # checked against the sealed results: the old file is not damage
    assert all(column not in row for row in rows for column in COST_COLUMNS)  # not known
    assert not has_training_cost(summarize_results(rows))  # its report draws no cost figure
    before = {path: path.read_bytes() for path in copy.glob("trial_*/level_*/*/result.json")}
    again = find_tickets(_config(), root=tmp_path, data=tiny_data_for_module, progress=False, report=False)
    assert again.run_dir == copy
    assert {path: path.read_bytes() for path in copy.glob("trial_*/level_*/*/result.json")} == before  # no retraining
    assert (copy / "results.csv").read_bytes() == run.results_csv.read_bytes()


def test_ticketlab_report_draws_the_metric_against_training_cost(run, capsys):
    assert cli.main(["report", str(run.run_dir)]) == 0
    report = run.run_dir / "report"
    assert (report / "training_cost.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "training_cost.png" in (report / "summary.md").read_text()
    html = (run.run_dir / "report.html").read_text()
    assert html.index("report/lottery.png") < html.index("report/training_cost.png")  # the two views, in order


def test_a_convolution_costs_each_weight_once_per_output_position():
    def make_model(seed):
        return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                             nn.Linear(4 * 4 * 4, 10))

    task = SimpleNamespace(example_inputs=lambda data, split, count: torch.zeros(count, 1, 8, 8))
    pricing = forward_cost(SimpleNamespace(task=task, make_model=make_model, data=None))
    assert pricing.weights == {"0.weight": 36, "4.weight": 640}
    assert pricing.flops({}) == 2 * (36 * 8 * 8 + 640)  # 3x3x1x4 weights at 64 positions, then the Linear
    assert pricing.flops({"0.weight": 9}) == 2 * (9 * 64 + 640)
    assert forward_cost(SimpleNamespace(task=SimpleNamespace(example_inputs=None))) is None  # no FLOPs count


def test_a_global_keep_count_is_priced_between_the_dense_network_and_the_final_mask():
    pricing = ForwardCost({"a": 2, "b": 20}, {"a": 100, "b": 100})
    final, sizes = {"a": 10, "b": 50}, {"a": 100, "b": 100}
    assert _forward_flops(pricing, 60, final, sizes) == pricing.flops(final) == 1020
    assert _forward_flops(pricing, 200, final, sizes) == pricing.flops(sizes) == 2200
    assert _forward_flops(pricing, 130, final, sizes) == pytest.approx((1020 + 2200) / 2)
    assert _forward_flops(pricing, {"a": 50, "b": 80}, final, sizes) == 2 * 50 + 20 * 80  # per tensor: exact
