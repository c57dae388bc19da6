"""N:M tickets: masks with at most N (exactly N while the level keeps at least N/M) of every M consecutive weights
along the input dimension, recomputed with numpy; honoured by IMP, its random control, the at-init scores and
their shuffled control; kept by the export; a pattern a layer cannot hold refused in one line, exit 2."""

import subprocess
import sys

import numpy as np
import pytest
import torch

from ticketlab.cli import main
from ticketlab.config import ExperimentConfig, ModelConfig, PruneConfig, TrainConfig
from ticketlab.errors import ConfigError
from ticketlab.api import find_tickets
from ticketlab.lottery.keys import DENSE, JobKey
from ticketlab.pruning import masks_from_scores, shuffle_within_layers
from ticketlab.store import load_tensors


def _groups(array, m):
    return np.asarray(array).reshape(-1, m)


def _numpy_n_m(scores, n, m, eligible=None):
    """Top-N of each group of M consecutive entries of each row (ties: the earlier position), eligible ones only."""
    values = np.asarray(scores, dtype=np.float64).ravel()
    if eligible is not None:
        values = np.where(np.asarray(eligible).ravel() > 0, values, -np.inf)
    keep = np.zeros(values.size, dtype=bool)
    for start in range(0, values.size, m):
        group = values[start:start + m]
        chosen = np.argsort(-group, kind="stable")[:n]
        keep[start + chosen[np.isfinite(group[chosen])]] = True
    return keep.reshape(np.shape(scores))


@pytest.mark.parametrize("n, m", [(2, 4), (1, 4), (3, 8)])
def test_exactly_n_of_every_m_and_the_numpy_recomputation(n, m):
    generator = torch.Generator().manual_seed(0)
    scores = {"fc": torch.randn(6, 16, generator=generator), "conv": torch.randn(4, 2, 2, 4, generator=generator)}
    sizes = {name: score.numel() for name, score in scores.items()}
    masks = masks_from_scores(scores, sizes, n_m=(n, m))  # a dense plan: the pattern alone prunes
    for name, score in scores.items():
        assert (_groups(masks[name].numpy(), m).sum(axis=1) == n).all()
        assert np.array_equal(masks[name].numpy().astype(bool), _numpy_n_m(score.numpy(), n, m))
    total = masks_from_scores(scores, sum(sizes.values()), n_m=(n, m))  # global scope: the same
    assert all(torch.equal(total[name], masks[name]) for name in scores)
    scores["fc"][0, :m] = 1.0  # ties go to the earlier positions
    assert masks_from_scores(scores, sizes, n_m=(n, m))["fc"][0, :m].tolist() == [1.0] * n + [0.0] * (m - n)


def test_below_n_over_m_the_pattern_caps_each_group_and_the_count_holds():
    generator = torch.Generator().manual_seed(1)
    scores = {"fc": torch.randn(8, 12, generator=generator)}
    eligible = {"fc": (torch.rand(8, 12, generator=generator) > 0.2).float()}
    masks = masks_from_scores(scores, {"fc": 20}, eligible=eligible, n_m=(2, 4))
    assert masks["fc"].sum() == 20 and not (masks["fc"] * (1 - eligible["fc"])).any()
    assert (_groups(masks["fc"].numpy(), 4).sum(axis=1) <= 2).all()
    candidates = _numpy_n_m(scores["fc"].numpy(), 2, 4, eligible["fc"].numpy())
    kept = np.sort(scores["fc"].numpy()[masks["fc"].numpy() > 0])
    assert np.array_equal(kept, np.sort(scores["fc"].numpy()[candidates])[-20:])  # the best 20 candidates


def test_the_shuffled_control_keeps_the_pattern():
    mask = {"fc": torch.tensor(_numpy_n_m(np.random.default_rng(0).normal(size=(5, 8)), 2, 4)).float()}
    shuffled = shuffle_within_layers(mask, 3, (2, 4))["fc"]
    assert (_groups(shuffled.numpy(), 4).sum(axis=1) == 2).all() and not torch.equal(shuffled, mask["fc"])


def test_a_layer_m_does_not_divide_is_named():
    with pytest.raises(ConfigError, match=r"prune.n_m '2:4' needs every pruned layer's input size to be a multiple "
                                          r"of 4; conv has input size 18"):
        masks_from_scores({"fc": torch.ones(2, 8), "conv": torch.ones(3, 2, 3, 3)}, 10, n_m=(2, 4))


VARIANTS = ("iterative_reset", "random_pruning", "magnitude_at_init", "magnitude_at_init_shuffled", "lr_rewind")


@pytest.fixture(scope="module")
def finished(tmp_path_factory, tiny_data_for_module, one_thread_for_module):
    config = ExperimentConfig(
        model=ModelConfig(name="mlp", hidden=(16,)),
        train=TrainConfig(optimizer="adam", lr=5e-3, batch_size=50, steps="10it", eval_every="10it"),
        prune=PruneConfig(rate=0.2, output_rate=0.2, levels=2, n_m="2:4"),
        variants=VARIANTS, trials=1)
    return find_tickets(config, root=tmp_path_factory.mktemp("n_m"), data=tiny_data_for_module, progress=False,
                        report=False, population=1)


def _tensors(run_dir, level, variant, name):
    return {key: value.numpy() for key, value in load_tensors(JobKey(0, level, variant).directory(run_dir)
                                                               / name).items()}


def test_every_variant_draws_2_of_4_and_imp_equals_numpy(finished):
    run_dir = finished.run_dir
    for variant in VARIANTS:
        for level in (1, 2):  # 80% and 64% of each layer planned: the 2:4 pattern keeps exactly 50%
            mask = _tensors(run_dir, level, variant, "mask.safetensors")
            final = _tensors(run_dir, level, variant, "weights_final.safetensors")
            for name, kept in mask.items():
                assert (_groups(kept, 4).sum(axis=1) == 2).all(), (variant, level, name)
                assert not final[name][~kept].any()
    dense_final = _tensors(run_dir, 0, DENSE, "weights_final.safetensors")
    theta0 = _tensors(run_dir, 0, DENSE, "weights_init.safetensors")
    imp = _tensors(run_dir, 1, "iterative_reset", "mask.safetensors")
    at_init = _tensors(run_dir, 1, "magnitude_at_init", "mask.safetensors")
    for name in imp:
        assert np.array_equal(imp[name], _numpy_n_m(np.abs(dense_final[name]), 2, 4))
        assert np.array_equal(at_init[name], _numpy_n_m(np.abs(theta0[name]), 2, 4))
    assert {round(row["weights_remaining_percent"], 6) for row in finished.rows if row["level"] > 0} == {50.0}


def test_the_export_keeps_and_checks_the_pattern(finished, tmp_path, tiny_data_for_module):
    from ticketlab.export.api import export_ticket, load_ticket, n_m_violations

    ticket = load_ticket(finished.run_dir, 2, model=None, data=tiny_data_for_module)
    result = export_ticket(ticket, "dense", tmp_path / "ticket.safetensors")
    exported = load_tensors(result.path)
    for name in ticket.masks:
        assert (_groups(exported[name].numpy() != 0, 4).sum(axis=1) <= 2).all()
    assert n_m_violations(exported, ticket.masks, (2, 4)) == []
    exported["layers.1.weight"][0, :3] = 1.0
    assert n_m_violations(exported, ticket.masks, (2, 4)) == ["layers.1.weight"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="semi-structured 2:4 kernels need CUDA")
def test_semi_structured_2_4_on_cuda(finished, tiny_data_for_module):
    from ticketlab.export.api import load_ticket

    ticket = load_ticket(finished.run_dir, 1, model=None, data=tiny_data_for_module)
    weight = ticket.model.layers[1].weight.detach().to("cuda", torch.float16)
    weight = torch.nn.functional.pad(weight, (0, 64 - weight.shape[1] % 64 if weight.shape[1] % 64 else 0,
                                               0, 64 - weight.shape[0] % 64 if weight.shape[0] % 64 else 0))
    sparse = torch.sparse.to_sparse_semi_structured(weight)
    inputs = torch.randn(weight.shape[1], 64, device="cuda", dtype=torch.float16)
    torch.testing.assert_close(sparse @ inputs, weight @ inputs, rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("extra, message", [
    (["--prune.n_m", "abc"], "prune.n_m 'abc' must be N:M with 1 <= N < M, e.g. 2:4 or 1:4"),
    (["--prune.n_m", "2:4", "--prune.unit", "channel"],
     "prune.n_m '2:4' is a pattern of single weights; use it with prune.unit 'weight'"),
])
def test_bad_settings_are_refused_through_main(extra, message, tmp_path, capsys):
    assert main(["find", *extra, "--root", str(tmp_path / "runs")]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"ticketlab: error: {message}"]
    assert not (tmp_path / "runs").exists()


def test_a_pattern_the_model_cannot_hold_is_refused_through_main(tmp_path, capsys):
    code = main(["find", "--model.hidden", "16,16", "--steps", "4it", "--levels", "1", "--trials", "1",
                 "--data.train_size", "500", "--quiet", "--no-report", "--workers", "1", "--prune.n_m", "1:3",
                 "--root", str(tmp_path / "runs")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0] == ("ticketlab: error: prune.n_m '1:3' needs every pruned layer's input size to be a multiple of 3; "
                      "layers.1.weight has input size 40")
    assert not list((tmp_path / "runs").rglob("*.safetensors"))


@pytest.mark.parametrize("pattern, message", [
    ("1:3", "prune.n_m '1:3' needs every pruned layer's input size to be a multiple of 3; policy_trunk.0.weight "
            "has input size 4"),
    ("4:4", "prune.n_m '4:4' must be N:M with 1 <= N < M, e.g. 2:4 or 1:4"),
])
def test_the_installed_executable_refuses_in_one_line(pattern, message, tmp_path):
    pytest.importorskip("gymnasium")  # the RL preset: no data to generate in the child process
    completed = subprocess.run([sys.executable, "-m", "ticketlab", "find", "--preset", "ppo_tiny", "--prune.n_m",
                                pattern, "--root", str(tmp_path / "runs")], capture_output=True, text=True, timeout=300)
    err = completed.stderr.strip().splitlines()
    assert completed.returncode == 2 and err == [f"ticketlab: error: {message}"], completed.stderr
