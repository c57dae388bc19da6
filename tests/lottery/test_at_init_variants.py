"""The pruning-at-initialization and early-bird variants of `find`, on one tiny finished run: masks against
independent recomputations from the run's stored θ0, exact counts at every level, the controls, the early-bird
search's records, and a re-run that trains nothing."""

import csv

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ticketlab.cli import main
from ticketlab.config import ExperimentConfig, ModelConfig, PruneConfig, TrainConfig
from ticketlab.api import find_tickets
from ticketlab.store import load_tensors, read_json
from ticketlab.training.loop import batch_indices

NAMES = ["layers.1.weight", "layers.3.weight", "layers.5.weight"]
VARIANTS = ("iterative_reset", "snip", "snip_shuffled", "snip_reinit", "grasp", "synflow", "magnitude_at_init",
            "early_bird", "early_bird_reset")


def _config(**prune):
    return ExperimentConfig(
        model=ModelConfig(name="mlp", hidden=(24, 12)),
        train=TrainConfig(optimizer="adam", lr=5e-3, batch_size=50, steps="40it", eval_every="10it"),
        prune=PruneConfig(rate=0.5, output_rate=0.25, levels=2, score_batches=2, synflow_rounds=10,
                          early_bird_every="4it", early_bird_window=3, early_bird_threshold=0.05, **prune),
        variants=VARIANTS, trials=1,
    )


@pytest.fixture(scope="module")
def finished(tmp_path_factory, tiny_data_for_module):
    root = tmp_path_factory.mktemp("atinit")
    result = find_tickets(_config(), root=root, data=tiny_data_for_module, progress=False, report=False)
    return result, root


def _job(run_dir, level, variant):
    return run_dir / "trial_0" / f"level_{level:02d}" / variant


def _mask(run_dir, level, variant):
    return {name: value.numpy().astype(bool) for name, value in load_tensors(_job(run_dir, level, variant)
                                                                               / "mask.safetensors").items()}


def _levels_total(run_dir, level):
    ticket = _mask(run_dir, level, "iterative_reset")
    return sum(int(mask.sum()) for mask in ticket.values())


def _global_top(scores, total):
    joined = np.concatenate([scores[name].ravel() for name in NAMES])
    kept = np.zeros(joined.size, dtype=bool)
    kept[np.argsort(-joined, kind="stable")[:total]] = True
    return kept


def test_every_at_init_mask_keeps_the_levels_total(finished):
    result, _ = finished
    run_dir = result.run_dir
    for level in (1, 2):
        total = _levels_total(run_dir, level)
        for variant in VARIANTS[1:7]:
            assert sum(int(mask.sum()) for mask in _mask(run_dir, level, variant).values()) == total, variant


def test_magnitude_and_snip_masks_match_a_recomputation_from_theta0(finished, tiny_data_for_module):
    result, _ = finished
    run_dir, data = result.run_dir, tiny_data_for_module
    theta0 = load_tensors(_job(run_dir, 0, "dense") / "weights_init.safetensors")
    for level in (1, 2):
        total = _levels_total(run_dir, level)
        magnitudes = {name: np.abs(theta0[name].numpy()) for name in NAMES}
        kept = np.concatenate([_mask(run_dir, level, "magnitude_at_init")[name].ravel() for name in NAMES])
        joined = np.concatenate([magnitudes[name].ravel() for name in NAMES])
        assert kept.sum() == total and joined[kept].min() >= joined[~kept].max()
    # SNIP: |g ⊙ θ0| with g summed over the 2 scoring batches the run drew, recomputed with plain autograd
    from ticketlab.models import build_model

    model = build_model("mlp", data.input_shape, data.num_classes, hidden=(24, 12))
    model.load_state_dict(theta0)
    seed = read_json(_job(run_dir, 1, "snip") / "result.json")  # finished, so scored
    assert seed["mask_time_s"] > 0
    from ticketlab.seeds import derive_seed

    grads = {name: torch.zeros_like(theta0[name]) for name in NAMES}
    parameters = dict(model.named_parameters())
    for index in range(2):
        rows = batch_indices(index, len(data.x_train), 50, derive_seed(0, 0, "score_batches"))
        loss = F.cross_entropy(model(data.x_train[rows]), data.y_train[rows])
        for name, grad in zip(NAMES, torch.autograd.grad(loss, [parameters[name] for name in NAMES])):
            grads[name] += grad
    scores = {name: (grads[name] * theta0[name]).abs().numpy() for name in NAMES}
    for level in (1, 2):
        kept = np.concatenate([_mask(run_dir, level, "snip")[name].ravel() for name in NAMES])
        joined = np.concatenate([scores[name].ravel() for name in NAMES])
        assert joined[kept].min() >= joined[~kept].max() - 1e-7


def test_controls_shuffle_within_layers_and_reinitialize(finished):
    result, _ = finished
    run_dir = result.run_dir
    snip, shuffled, reinit = (_mask(run_dir, 2, variant) for variant in ("snip", "snip_shuffled", "snip_reinit"))
    assert {n: int(m.sum()) for n, m in shuffled.items()} == {n: int(m.sum()) for n, m in snip.items()}
    assert any(not np.array_equal(shuffled[name], snip[name]) for name in NAMES)
    assert all(np.array_equal(reinit[name], snip[name]) for name in NAMES)
    theta0 = load_tensors(_job(run_dir, 0, "dense") / "weights_init.safetensors")
    snip_start = load_tensors(_job(run_dir, 2, "snip") / "weights_init.safetensors")
    reinit_start = load_tensors(_job(run_dir, 2, "snip_reinit") / "weights_init.safetensors")
    for name in NAMES:
        assert torch.equal(snip_start[name], theta0[name] * torch.from_numpy(snip[name]).float())
        assert not torch.equal(reinit_start[name], snip_start[name])


def test_early_bird_search_records_detection_and_the_ticket_starts_there(finished):
    result, _ = finished
    run_dir = result.run_dir
    search = read_json(_job(run_dir, 0, "early_bird_search") / "result.json")
    with open(run_dir / "early_bird.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(row["level"]) for row in rows] == [1, 2]
    for row in rows:
        level = search["levels"][row["level"]]
        assert int(row["detection_step"]) == level["detection_step"] <= 40
        assert float(row["training_saved_percent"]) == pytest.approx(100 * (1 - level["detection_step"] / 40), abs=0.01)
        history = level["history"]
        assert [point["step"] for point in history] == list(range(4, 4 * len(history) + 1, 4))
        if level["detected"]:  # the detecting check is the first full window under the threshold
            distances = [point["weights_distance"] for point in history]
            assert distances[:2] == [None, None] and distances[-1] < 0.05
            assert all(distance >= 0.05 for distance in distances[2:-1])
        ticket = read_json(_job(run_dir, int(row["level"]), "early_bird") / "result.json")
        assert ticket["start_step"] == level["detection_step"]
        # the ticket's mask is the level's magnitude mask of the detection-point weights
        weights = load_tensors(_job(run_dir, 0, "early_bird_search") / f"weights_level_{int(row['level']):02d}.safetensors")
        ticket_layers = _mask(run_dir, int(row["level"]), "early_bird")
        for name in NAMES:  # within each layer, the largest magnitudes (the pruned ones are 0 in those weights)
            magnitudes = np.abs(weights[name].numpy())
            assert magnitudes[ticket_layers[name]].min() >= magnitudes[~ticket_layers[name]].max(), name
        kept = np.concatenate([ticket_layers[name].ravel() for name in NAMES])
        ticket_mask = _mask(run_dir, int(row["level"]), "iterative_reset")
        assert kept.sum() == sum(int(mask.sum()) for mask in ticket_mask.values())
    reset = read_json(_job(run_dir, 1, "early_bird_reset") / "result.json")
    assert reset["start_step"] == 0
    rows_by_variant = {row["variant"] for row in result.rows}
    assert rows_by_variant == set(VARIANTS)


def test_a_finished_run_trains_nothing_again(finished, tiny_data_for_module):
    result, root = finished
    stamps = {path: path.stat().st_mtime_ns for path in result.run_dir.rglob("result.json")}
    again = find_tickets(_config(), root=root, data=tiny_data_for_module, progress=False, report=False)
    assert again.rows == result.rows
    assert {path: path.stat().st_mtime_ns for path in result.run_dir.rglob("result.json")} == stamps


@pytest.mark.parametrize("flag, value, expected", [
    ("--prune.at_init_scope", "columns", "prune.at_init_scope"),
    ("--prune.early_bird_window", "1", "prune.early_bird_window"),
    ("--prune.early_bird_criterion", "gradients", "prune.early_bird_criterion"),
    ("--variants", "snipp", "variants"),
])
def test_bad_settings_are_one_line_errors(flag, value, expected, tmp_path, capsys):
    assert main(["find", "--root", str(tmp_path), flag, value]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and expected in error
    assert not any(tmp_path.iterdir())


def test_the_report_draws_the_at_init_and_early_bird_figures(finished):
    from ticketlab.report import write_report

    result, _ = finished
    files = write_report(result.run_dir)
    for kind in ("png", "at_init_png", "early_bird_png"):
        assert files[kind].is_file() and files[kind].stat().st_size > 10_000
    summary = files["markdown"].read_text()
    assert "## Pruning at initialization" in summary and "## Early-bird tickets" in summary
