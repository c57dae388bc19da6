"""End to end on a tiny problem: variants, masks, resets, results.csv, report and resume."""

import csv

import pytest
import torch

from ticketlab.config import ExperimentConfig, ModelConfig, PruneConfig, TrainConfig
from ticketlab.data.splits import make_splits
from ticketlab.api import find_tickets
from ticketlab.lottery.results_csv import RESULT_COLUMNS
from ticketlab.store import load_tensors, read_json


def _config(**changes):
    config = ExperimentConfig(
        model=ModelConfig(name="mlp", hidden=(32, 16)),
        train=TrainConfig(optimizer="adam", lr=5e-3, batch_size=50, steps="60it", eval_every="20it"),
        prune=PruneConfig(rate=0.5, output_rate=0.25, levels=2),
        trials=2,
    )
    return config.replace(**changes) if changes else config




def _run(tmp_path, data, **changes):
    return find_tickets(_config(**changes), root=tmp_path, data=data, progress=False)


def test_end_to_end_results_masks_and_resets(tmp_path, tiny_data):
    result = _run(tmp_path, tiny_data)
    with open(result.results_csv) as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == RESULT_COLUMNS
    variants = {row["variant"] for row in rows}
    assert variants == {"iterative_reset", "iterative_reinit", "oneshot_reset", "oneshot_reinit", "random_pruning", "finetune"}
    assert len(rows) == 6 * 2 * 3  # variants x trials x (dense + 2 levels)
    for row in rows:
        if row["level"] == "0":
            assert float(row["weights_remaining_percent"]) == 100.0
    run_dir = result.run_dir
    for trial in range(2):
        dense = run_dir / f"trial_{trial}" / "level_00" / "dense"
        theta0 = load_tensors(dense / "weights_init.safetensors")
        previous_mask = None
        for level in (1, 2):
            level_dir = run_dir / f"trial_{trial}" / f"level_{level:02d}"
            ticket_mask = load_tensors(level_dir / "iterative_reset" / "mask.safetensors")
            # layerwise counts: hidden layers lose half of the remaining weights, the output layer a quarter
            total = {name: mask.numel() for name, mask in ticket_mask.items()}
            kept = {name: int(mask.sum()) for name, mask in ticket_mask.items()}
            expected = dict(total)
            for _ in range(level):
                expected = {name: count - round((0.25 if name == "layers.5.weight" else 0.5) * count)
                            for name, count in expected.items()}
            assert kept == expected
            if previous_mask is not None:  # iterative masks are nested
                assert all(torch.all(ticket_mask[n] <= previous_mask[n]) for n in ticket_mask)
            previous_mask = ticket_mask
            # reset: surviving weights are exactly θ0, pruned ones exactly 0; biases reset too
            start = load_tensors(level_dir / "iterative_reset" / "weights_init.safetensors")
            for name, value in theta0.items():
                expected_value = value * ticket_mask[name] if name in ticket_mask else value
                assert torch.equal(start[name], expected_value), name
            # reinit: same mask, different weights
            reinit_mask = load_tensors(level_dir / "iterative_reinit" / "mask.safetensors")
            assert all(torch.equal(reinit_mask[n], ticket_mask[n]) for n in ticket_mask)
            reinit_start = load_tensors(level_dir / "iterative_reinit" / "weights_init.safetensors")
            assert not torch.equal(reinit_start["layers.1.weight"], start["layers.1.weight"])
            # random pruning and one-shot: same per-layer counts as the ticket, different masks
            for variant in ("random_pruning", "oneshot_reset", "oneshot_reinit"):
                mask = load_tensors(level_dir / variant / "mask.safetensors")
                assert {n: int(m.sum()) for n, m in mask.items()} == kept
            random_mask = load_tensors(level_dir / "random_pruning" / "mask.safetensors")
            assert not torch.equal(random_mask["layers.1.weight"], ticket_mask["layers.1.weight"])
            # every job's trained weights are exactly zero where pruned
            for variant in ("iterative_reset", "random_pruning", "finetune", "oneshot_reinit"):
                final = load_tensors(level_dir / variant / "weights_final.safetensors")
                mask = load_tensors(level_dir / variant / "mask.safetensors")
                assert all(torch.all(final[n][~mask[n]] == 0) for n in mask)
        # one-shot at level 2 prunes the dense trained weights by magnitude directly
        dense_final = load_tensors(dense / "weights_final.safetensors")["layers.1.weight"].abs()
        oneshot = load_tensors(run_dir / f"trial_{trial}" / "level_02" / "oneshot_reset" / "mask.safetensors")
        kept_values = dense_final[oneshot["layers.1.weight"]]
        dropped_values = dense_final[~oneshot["layers.1.weight"]]
        assert kept_values.min() >= dropped_values.max()
    assert result.report_files["png"].stat().st_size > 1000
    assert (run_dir / "layer_sparsity.csv").exists()
    assert read_json(run_dir / "config.json")["config"]["trials"] == 2


def _result_files(run_dir):
    return {path: path.stat().st_mtime_ns for path in run_dir.glob("trial_*/level_*/*/result.json")}


@pytest.mark.parametrize("population", [1, None])
def test_rerun_trains_nothing_and_more_trials_reuse_finished_jobs(tmp_path, tiny_data, population):
    def run(trials):
        return find_tickets(_config(trials=trials, variants=["iterative_reset"]), root=tmp_path, data=tiny_data,
                            progress=False, report=False, population=population)

    first = run(1)
    finished = _result_files(first.run_dir)
    assert len(finished) == 3
    again = run(1)
    assert _result_files(again.run_dir) == finished and again.rows == first.rows
    assert not list(again.run_dir.glob("**/checkpoint.safetensors"))
    more = run(2)
    after = _result_files(more.run_dir)
    assert more.run_dir == first.run_dir and len(after) == 6
    assert all(after[path] == mtime for path, mtime in finished.items())  # trial 0 was not retrained
    assert [row for row in more.rows if row["trial"] == 0] == first.rows


def test_late_rewinding_starts_from_dense_weights_at_step_k(tmp_path, tiny_data):
    result = _run(tmp_path, tiny_data, trials=1, variants=["iterative_reset", "iterative_reinit"], **{"prune.rewind": "20it"})
    dense = result.run_dir / "trial_0" / "level_00" / "dense"
    rewind = load_tensors(dense / "weights_rewind.safetensors")
    theta0 = load_tensors(dense / "weights_init.safetensors")
    assert not torch.equal(rewind["layers.1.weight"], theta0["layers.1.weight"])
    level = result.run_dir / "trial_0" / "level_01" / "iterative_reset"
    mask = load_tensors(level / "mask.safetensors")
    start = load_tensors(level / "weights_init.safetensors")
    assert torch.equal(start["layers.1.weight"], rewind["layers.1.weight"] * mask["layers.1.weight"])
    record = read_json(level / "result.json")
    assert record["start_step"] == 20 and record["final_iteration"] == 60
    assert read_json(result.run_dir / "trial_0" / "level_01" / "iterative_reinit" / "result.json")["start_step"] == 20


def test_global_scope_and_target_percent(tmp_path, tiny_data):
    result = _run(tmp_path, tiny_data, trials=1, variants=["iterative_reset", "oneshot_reset"],
                  **{"prune.scope": "global", "prune.rate": 0.5, "prune.target_remaining_percent": 30.0, "prune.levels": 100})
    remaining = sorted({round(row["weights_remaining_percent"], 3) for row in result.rows}, reverse=True)
    assert remaining[0] == 100.0 and remaining[-1] <= 30.0 and remaining[-2] > 30.0


def test_custom_module_and_tensors_from_python(tmp_path, tiny_data):
    from torch import nn

    model = nn.Sequential(nn.Linear(24, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 10))
    config = _config(trials=1, variants=["iterative_reset", "random_pruning"])
    result = find_tickets(config, root=tmp_path, model=model, data=tiny_data, progress=False, report=False)
    assert result.run_dir.name.startswith("custom-tensors_custom-sequential_")
    mask = load_tensors(result.run_dir / "trial_0" / "level_02" / "iterative_reset" / "mask.safetensors")
    assert set(mask) == {"0.weight", "3.weight"}  # BatchNorm and biases are not pruned
    assert int(mask["0.weight"].sum()) == 24 * 32 // 4
    final = load_tensors(result.run_dir / "trial_0" / "level_02" / "iterative_reset" / "weights_final.safetensors")
    assert "1.running_mean" in final
    # the caller's module is never modified
    assert model[0].weight.count_nonzero() == model[0].weight.numel()


def test_worker_processes_for_unstacked_jobs_come_with_the_notice(tmp_path, monkeypatch, capsys):
    """A built-in conv net on the CPU with workers > 1 trains one job per worker process; the user is told why
    in one line, as on the in-process path (the workers themselves are replaced by a recorder here)."""
    generator = torch.Generator().manual_seed(0)
    images, labels = torch.rand(300, 1, 8, 8, generator=generator), torch.randint(0, 4, (300,), generator=generator)
    splits = make_splits(images[:200], labels[:200], images[200:], labels[200:], validation_size=40, num_classes=4)
    from ticketlab.tasks import classification

    monkeypatch.setattr(classification, "load_dataset", lambda data_config: splits)  # data load through the task
    parallel_runs = []
    from ticketlab.lottery.executors import processes

    monkeypatch.setattr(processes, "run_jobs_parallel",
                        lambda ctx, graph, workers, bar, on_jobs_done: parallel_runs.append(workers))
    config = _config(**{"model.name": "conv2", "model.width": 4})
    find_tickets(config, root=tmp_path, workers=2, progress=False, report=False)
    assert parallel_runs == [2]
    notices = [line for line in capsys.readouterr().err.splitlines() if line.startswith("ticketlab: ")]
    assert notices == ["ticketlab: ConvNet trains one job at a time on cpu (stacked convolutions are slower there); "
                       "--population N stacks N jobs"]
