"""Dynamic sparse training (RigL, Evci et al. 2020; SET, Mocanu et al. 2018) against independent computations: at
each update the dropped set is a numpy bottom-k of the weights' magnitudes among the active entries, RigL's grown set
a numpy top-k of the dense gradient (recomputed here on the training batch of that step) among the inactive ones,
SET's grown count right and its entries inactive before; α_t is the cosine decay; every layer keeps its count, the
start is at the ERK densities (the formula, recomputed); masked weights are 0 at every step; a job killed in the
middle of its schedule resumes to the same bytes, alone or stacked in a population (which trains them as they
train alone); under an N:M pattern the update is the greedy one and keeps the
pattern; bad settings are refused in one line."""

import math
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ticketlab import cli
from ticketlab.api import find_tickets
from ticketlab.config import ExperimentConfig, ModelConfig, PruneConfig, TrainConfig
from ticketlab.errors import ConfigError
from ticketlab.lottery.experiment import model_factory
from ticketlab.lottery.graph import trains_alone
from ticketlab.lottery.jobs import ExperimentContext, JobKey, prepare_job
from ticketlab.lottery.masks import compute_mask
from ticketlab.lottery.variants import dst, variant_named
from ticketlab.pruning import masks_from_scores
from ticketlab.pruning.regrowth import drop_and_grow
from ticketlab.seeds import derive_seed
from ticketlab.store import load_tensors, load_tensors_and_metadata, read_json
from ticketlab.tasks.classification import score_losses
from ticketlab.training.batches import batch_indices
from ticketlab.training import engine
from ticketlab.training.loop import TrainingInterrupted
from independent_checks import assert_rows_match
from tests.lottery.interrupt import kill_population_after

TOTAL, EVERY, END, ALPHA = 20, 3, 15, 0.5
UPDATES = [3, 6, 9, 12]  # ΔT, 2ΔT, ... before T_end
SHAPES = {"layers.1.weight": (16, 24), "layers.3.weight": (10, 16)}
BATCH = 50


def _config(variants=("rigl", "set"), **prune):
    return ExperimentConfig(
        model=ModelConfig(name="mlp", hidden=(16,)),
        train=TrainConfig(optimizer="sgd", lr=0.1, momentum=0.9, batch_size=BATCH, steps=f"{TOTAL}it",
                          eval_every="5it"),
        prune=PruneConfig(rate=0.5, output_rate=0.5, levels=2, dst_every=f"{EVERY}it", dst_end=f"{END}it",
                          dst_drop_fraction=ALPHA, **prune),
        variants=variants,
        trials=1,
    )


def _find(root, data, population=1):  # one job at a time: the engine asks the schedule at every step
    return find_tickets(_config(), root=root, data=data, progress=False, report=False, population=population)


@pytest.fixture(scope="module")
def clean(tmp_path_factory, tiny_data_for_module, one_thread_for_module):
    """A finished run, and every call of its schedules: (variant, step, model state, mask in force, grow scores,
    new mask or None)."""
    calls = []
    original = dst.DynamicSparseSchedule.__call__

    def recording(self, step, model, mask):
        variant = "rigl" if "gradient" in self.grow_scores.__qualname__ else "set"
        state = {name: value.detach().clone() for name, value in model.state_dict().items()}
        in_force = {name: value.numpy().copy() for name, value in mask.items()}
        scores = None
        if step in self.updates:
            scores = {name: value.numpy().copy() for name, value in self.grow_scores(step, model).items()}
        new = original(self, step, model, mask)
        copied = None if new is None else {name: value.numpy().copy() for name, value in new.items()}
        calls.append((variant, step, state, in_force, scores, copied))
        return new

    original_installer = engine._mask_installer

    def recording_installer(masks, masked_pairs, optimizer):  # the weights and optimizer state right after install
        install = original_installer(masks, masked_pairs, optimizer)

        def recorded(new_mask):
            before = {name: value.numpy().copy() for name, value in masks.items()}
            install(new_mask)
            state = {name: [parameter.detach().numpy().copy()] + [
                value.numpy().copy() for value in optimizer.state.get(parameter, {}).values()
                if torch.is_tensor(value) and value.shape == parameter.shape]
                for (parameter, _), name in zip(masked_pairs, list(masks))}
            installs.append((before, {name: value.numpy().copy() for name, value in masks.items()}, state))

        return recorded

    installs = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(dst.DynamicSparseSchedule, "__call__", recording)
        patch.setattr(engine, "_mask_installer", recording_installer)
        result = _find(tmp_path_factory.mktemp("dst"), tiny_data_for_module)
    return result, calls, installs


def _level(mask):
    return 1 if sum(int(value.sum()) for value in mask.values()) > 200 else 2


def _alpha(step):
    return ALPHA / 2 * (1 + np.cos(np.pi * step / END))


def _expected_sets(weights, grow_scores, mask, fraction):
    """(dropped, grown) positions: the k smallest |w| among active, the k largest scores among inactive (ties to
    the earlier position), k = floor(fraction * active)."""
    active = mask.ravel() > 0
    count = min(math.floor(fraction * active.sum()), int((~active).sum()))
    drop = np.argsort(np.where(active, np.abs(weights.ravel()), np.inf), kind="stable")[:count]
    grow = np.argsort(np.where(active, np.inf, -grow_scores.ravel().astype(np.float64)), kind="stable")[:count]
    return set(drop.tolist()), set(grow.tolist())


def _changes(before, after):
    before, after = before.ravel() > 0, after.ravel() > 0
    return set(np.flatnonzero(before & ~after).tolist()), set(np.flatnonzero(~before & after).tolist())


def _erk_counts(density):
    """ERK (Evci et al. 2020): density ε (n_out + n_in) / (n_out n_in) per layer, ε giving the overall density
    (both layers stay below 1 here)."""
    sizes = {name: rows * cols for name, (rows, cols) in SHAPES.items()}
    epsilon = density * sum(sizes.values()) / sum(rows + cols for rows, cols in SHAPES.values())
    assert all(epsilon * (rows + cols) / (rows * cols) < 1 for rows, cols in SHAPES.values())
    return {name: round(epsilon * (rows + cols)) for name, (rows, cols) in SHAPES.items()}


def test_updates_are_on_the_schedule_and_rigl_drops_and_grows_as_numpy(clean, tiny_data_for_module):
    _, calls, _ = clean
    config = _config()
    model = model_factory(config, tiny_data_for_module, None)(0)
    data_seed = derive_seed(config.seed, 0, "data_order")  # the job's training order
    x_train, y_train = tiny_data_for_module.x_train, tiny_data_for_module.y_train
    seen = {}
    for variant, step, state, in_force, scores, new in calls:
        if new is None:
            continue
        seen.setdefault((variant, _level(in_force)), []).append(step)
        if variant != "rigl":
            continue
        model.load_state_dict(state)  # the dense gradient on the batch of `step`, recomputed here
        indices = batch_indices(step, len(x_train), BATCH, data_seed)
        weights = [model.layers[1].weight, model.layers[3].weight]
        loss = F.cross_entropy(model(x_train[indices]), y_train[indices])
        gradient = dict(zip(SHAPES, (value.abs().numpy() for value in torch.autograd.grad(loss, weights))))
        for name in SHAPES:
            np.testing.assert_allclose(scores[name], gradient[name], rtol=1e-5, atol=1e-7)
            dropped, grown = _expected_sets(state[name].numpy(), gradient[name], in_force[name], _alpha(step))
            assert _changes(in_force[name], new[name]) == (dropped, grown), (step, name)
            assert len(dropped) == math.floor(_alpha(step) * in_force[name].sum()) > 0
    assert seen == {(variant, level): UPDATES for variant in ("rigl", "set") for level in (1, 2)}


def test_set_drops_by_magnitude_and_grows_as_many_inactive_weights(clean):
    _, calls, _ = clean
    updates = [call for call in calls if call[0] == "set" and call[5] is not None]
    assert len(updates) == 2 * len(UPDATES)
    for _, step, state, in_force, scores, new in updates:
        for name in SHAPES:
            dropped, grown = _changes(in_force[name], new[name])
            expected_drop, expected_grow = _expected_sets(state[name].numpy(), scores[name], in_force[name],
                                                          _alpha(step))
            assert dropped == expected_drop and grown == expected_grow
            assert len(grown) == len(dropped) == math.floor(_alpha(step) * in_force[name].sum())
            assert not in_force[name].ravel()[list(grown)].any()  # grown among the inactive entries
            assert not state[name].numpy().ravel()[list(grown)].any()  # which were 0: regrown weights start at 0
    # the regrowth is random: the two levels, and successive updates, grow different sets
    grown_sets = [_changes(call[3]["layers.1.weight"], call[5]["layers.1.weight"])[1] for call in updates]
    assert len({frozenset(grown) for grown in grown_sets}) == len(grown_sets)


def test_counts_stay_at_the_erk_densities_and_masked_weights_are_zero_at_every_step(clean):
    result, calls, _ = clean
    plan_density = {1: 272 / 544, 2: 136 / 544}  # the IMP levels' overall density (rate 0.5 on every layer)
    for variant, step, state, in_force, _, new in calls:
        expected = _erk_counts(plan_density[_level(in_force)])
        for name in SHAPES:
            assert int(in_force[name].sum()) == expected[name]
            assert new is None or int(new[name].sum()) == expected[name]
            assert not state[name].numpy()[in_force[name] == 0].any(), (variant, step, name)  # exactly 0
    for level in (1, 2):
        for variant in ("rigl", "set"):
            job = JobKey(0, level, variant).directory(result.run_dir)
            mask, final = load_tensors(job / "mask.safetensors"), load_tensors(job / "weights_final.safetensors")
            last = [call[5] for call in calls if call[0] == variant and call[5] is not None
                    and _level(call[3]) == level][-1]
            for name in SHAPES:
                assert np.array_equal(mask[name].numpy(), last[name] > 0)  # the stored mask is the final one
                assert not final[name][~mask[name]].any()
    rows = {(row["level"], row["variant"]): row for row in result.rows}
    assert rows[(2, "rigl")]["early_stop_iteration"] > UPDATES[-1]  # the early-stopping point is under the final mask
    assert not trains_alone(JobKey(0, 1, "rigl")) and not trains_alone(JobKey(0, 1, "set"))  # they stack


def test_right_after_an_update_dropped_and_regrown_weights_and_their_optimizer_state_are_zero(clean):
    _, _, installs = clean
    assert len(installs) == 4 * len(UPDATES)  # rigl and set, 2 levels
    for before, after, state in installs:
        for name in SHAPES:
            regrown = (before[name] == 0) & (after[name] == 1)
            assert regrown.any() and ((before[name] == 1) & (after[name] == 0)).sum() == regrown.sum()
            weights, *optimizer_state = state[name]
            assert optimizer_state  # SGD's momentum buffer
            for tensor in (weights, *optimizer_state):
                assert not tensor[after[name] == 0].any()  # dropped (and earlier pruned): exactly 0
                assert not tensor[regrown].any()  # regrown: starts at 0, with no momentum
            assert weights[after[name] == 1][~regrown[after[name] == 1]].all()  # the kept ones keep their values


def test_jobs_killed_in_the_middle_of_their_schedule_resume_to_the_same_bytes(clean, tmp_path, tiny_data_for_module):
    result, calls, _ = clean
    run_dir = tmp_path / result.run_dir.name
    shutil.copytree(result.run_dir, run_dir)
    config = _config().validate()
    ctx = ExperimentContext(config=config, run_dir=run_dir, data=tiny_data_for_module,
                            make_model=model_factory(config, tiny_data_for_module, None))
    keys = (JobKey(0, 2, "rigl"), JobKey(0, 2, "set"))
    for key in keys:
        job_dir = key.directory(run_dir)
        for name in ("result.json", "weights_final.safetensors", "metrics.jsonl", "mask.safetensors"):
            (job_dir / name).unlink()
        start = prepare_job(ctx, key)
        with pytest.raises(TrainingInterrupted):  # the last checkpoint is at step 10: the update at 12 remains
            ctx.task.train(start.model, ctx.data, config.train, masks=start.mask, data_seed=start.data_seed,
                           start_step=start.start_step, total_steps=start.total_steps, job_dir=job_dir,
                           checkpoint_interval_s=0, stop_after_step=12, mask_schedule=start.mask_schedule)
        tensors, metadata = load_tensors_and_metadata(job_dir / "checkpoint.safetensors")
        assert metadata["step"] == "10"
        in_force = next(call[3] for call in calls
                        if call[0] == key.variant and call[1] == 10 and _level(call[3]) == 2)
        assert all(np.array_equal(tensors[f"mask.{name}"].numpy(), in_force[name] > 0) for name in SHAPES)
    rerun = find_tickets(_config(), root=tmp_path, data=tiny_data_for_module, progress=False, report=False,
                         population=None)
    assert rerun.rows == result.rows
    for key in keys:
        for name in ("weights_final.safetensors", "mask.safetensors"):
            assert (key.directory(run_dir) / name).read_bytes() == (key.directory(result.run_dir) / name).read_bytes()


def test_stacked_in_a_population_they_train_as_alone_and_resume_after_a_kill(clean, tmp_path, tiny_data_for_module):
    """A classifier population asks each member's schedule at its update steps (RigL's gradient on the member's own
    weights) and installs the answer as the engine does: the masks of the jobs trained alone, the same numbers to
    float rounding; killed after its checkpoint at step 10, the population resumes to the same bytes."""
    alone = clean[0]
    stacked = _find(tmp_path / "stacked", tiny_data_for_module, population=None)
    assert read_json(stacked.run_dir / "population.json")["population"] > 1
    assert_rows_match(stacked.rows, alone.rows)
    keys = [JobKey(0, level, variant) for level in (1, 2) for variant in ("rigl", "set")]
    for key in keys:
        assert load_tensors(key.directory(stacked.run_dir) / "mask.safetensors").keys() == SHAPES.keys()
        for name, mask in load_tensors(key.directory(stacked.run_dir) / "mask.safetensors").items():
            assert torch.equal(mask, load_tensors(key.directory(alone.run_dir) / "mask.safetensors")[name]), key

    run_dir = tmp_path / "killed" / stacked.run_dir.name
    shutil.copytree(stacked.run_dir, run_dir)
    kill_population_after(run_dir, keys, _config(), tiny_data_for_module, 12,  # checkpoints at 5, 10
                          delete=("result.json", "weights_final.safetensors", "metrics.jsonl", "mask.safetensors"))
    for key in keys:
        tensors, metadata = load_tensors_and_metadata(key.directory(run_dir) / "checkpoint.safetensors")
        assert metadata["step"] == "10" and {f"mask.{name}" for name in SHAPES} <= tensors.keys()
    rerun = _find(tmp_path / "killed", tiny_data_for_module, population=None)
    assert rerun.rows == stacked.rows
    for key in keys:
        for name in ("weights_final.safetensors", "mask.safetensors"):
            assert (key.directory(run_dir) / name).read_bytes() == (key.directory(stacked.run_dir) / name).read_bytes()


def test_drop_and_grow_keeps_counts_and_leaves_a_dense_layer_alone():
    mask = {"a": torch.tensor([1.0, 1.0, 0.0, 0.0, 1.0, 0.0]), "dense": torch.ones(4)}
    drop = {"a": torch.tensor([0.5, 0.1, 0.0, 0.0, 0.1, 0.0]), "dense": torch.arange(4.0)}
    grow = {"a": torch.tensor([9.0, 9.0, 1.0, 2.0, 9.0, 2.0]), "dense": torch.arange(4.0)}
    new = drop_and_grow(mask, drop, grow, 0.7)  # floor(0.7 * 3) = 2: drop 1 and 4 (tie to the earlier), grow 3, 5
    assert new["a"].tolist() == [1.0, 0.0, 0.0, 1.0, 0.0, 1.0]
    assert torch.equal(new["dense"], mask["dense"])


def test_score_losses_from_a_first_batch_are_the_batches_of_those_steps(tiny_data_for_module):
    model = model_factory(_config(), tiny_data_for_module, None)(0)
    train = _config().train
    with torch.no_grad():
        all_losses = list(score_losses(model, tiny_data_for_module, train, 7, 5))
        later = list(score_losses(model, tiny_data_for_module, train, 7, 2, first_batch=3))
    assert [loss.item() for loss in later] == [loss.item() for loss in all_losses[3:]]


def test_random_pruning_with_prune_densities_draws_at_the_level_density(tmp_path, tiny_data_for_module):
    config = _config(variants=("random_pruning",), densities="er").validate()
    ctx = ExperimentContext(config=config, run_dir=tmp_path, data=tiny_data_for_module,
                            make_model=model_factory(config, tiny_data_for_module, None))
    mask = compute_mask(ctx, JobKey(0, 1, "random_pruning"))  # no ticket needed: the counts come from ER
    assert {name: int(value.sum()) for name, value in mask.items()} == _erk_counts(0.5)  # ER = ERK for 2-d weights
    assert compute_mask(ctx, JobKey(0, 1, "random_pruning"))["layers.1.weight"].equal(mask["layers.1.weight"])


def test_rigl_is_refused_for_a_task_without_a_training_loss():
    from types import SimpleNamespace

    with pytest.raises(ConfigError, match=r"variant 'rigl' regrows by the gradient of the training loss, which task "
                                          r"'toy' does not supply; use 'set' \(random regrowth\)"):
        variant_named("rigl").check_task(SimpleNamespace(name="toy", score_losses=None))
    variant_named("set").check_task(SimpleNamespace(name="toy", score_losses=None))


@pytest.mark.parametrize("extra, fragment", [
    (["--prune.dst_every", "0it"], "prune.dst_every '0it' must be at least 1 iteration"),
    (["--prune.dst_drop_fraction", "0"], "prune.dst_drop_fraction 0.0 must be a fraction in (0, 1)"),
    (["--prune.dst_drop_fraction", "1"], "prune.dst_drop_fraction 1.0 must be a fraction in (0, 1)"),
    (["--prune.dst_end", "20it"], "prune.dst_end '20it' must be before the end of training (train.steps '20it')"),
    (["--prune.dst_end", "0it"], "prune.dst_end '0it' must be at least 1 iteration"),
    (["--prune.densities", "gaussian"], "unknown prune.densities 'gaussian'; allowed: uniform, er, erk"),
    (["--prune.densities", "er", "--prune.unit", "channel"], "prune.densities 'er' distributes single weights"),
])
def test_a_bad_setting_is_refused_in_one_line(extra, fragment, tmp_path, capsys):
    root = tmp_path / "runs"
    code = cli.main(["find", "--model.hidden", "16", "--steps", "20it", "--levels", "1", "--trials", "1",
                     "--variants", "rigl,set", "--quiet", "--no-report", "--root", str(root), *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("ticketlab: error: "), err
    assert fragment in err[0], err[0]
    assert not root.exists() or not [path for path in root.rglob("*") if path.is_file() and path.name != ".lock"]


def _language_find(tmp_path, *extra):
    corpus = tmp_path / "data"
    corpus.mkdir(exist_ok=True)
    text = " the cat sat on the mat \n the dog sat \n a cat and a dog \n"
    for split, copies in (("train", 8), ("valid", 1), ("test", 1)):
        (corpus / f"ptb.{split}.txt").write_text(text * copies)
    return cli.main(["find", "--preset", "lstm_ptb_small", "--data-dir", str(corpus), "--root", str(tmp_path / "runs"),
                     "--quiet", "--trials", "1", "--levels", "1", "--steps", "8it", "--rewind", "0it",
                     "--train.milestones", "6it", "--train.eval_every", "4it", "--prune.dst_every", "2it",
                     "--model.hidden", "8,8", "--data.sequence_length", "5", "--train.batch_size", "2",
                     "--workers", "1", "--variants", "rigl,set", *extra])


def _greedy_n_m(mask, drop, grow, fraction, n, m):
    """The N:M update by its definition: drop the k smallest active, then walk the inactive entries best first and
    grow one while its group holds fewer than N; if short, walk the dropped ones the same way."""
    active = mask.ravel() > 0
    count = min(math.floor(fraction * active.sum()), int((~active).sum()))
    dropped = np.argsort(np.where(active, drop.ravel(), np.inf), kind="stable")[:count]
    new = active.copy()
    new[dropped] = False
    taken = 0
    inactive = [index for index in np.argsort(-grow.ravel(), kind="stable") if not active[index]]
    returning = sorted(dropped.tolist(), key=lambda index: (-grow.ravel()[index], index))
    for index in [*inactive, *returning]:
        if taken < count and new[index // m * m:(index // m + 1) * m].sum() < n:
            new[index] = True
            taken += 1
    assert taken == count
    return new.reshape(mask.shape), dropped


@pytest.mark.parametrize("n, m", [(2, 4), (1, 4), (3, 4)])
def test_drop_and_grow_keeps_an_n_m_pattern_as_the_greedy_definition(n, m):
    generator = torch.Generator().manual_seed(n * 10 + m)
    returned = 0
    for trial in range(6):
        scores = {"w": torch.rand(8, 16, generator=generator)}
        most = 8 * 16 * n // m  # every group full
        keep = {"w": int(torch.randint(most // 2, most + 1, (1,), generator=generator))}
        mask = masks_from_scores(scores, keep, n_m=(n, m))
        drop, grow = torch.randn(8, 16, generator=generator), torch.randn(8, 16, generator=generator)
        fraction = 0.2 + 0.1 * trial
        new = drop_and_grow(mask, {"w": drop.abs()}, {"w": grow.abs()}, fraction, n_m=(n, m))["w"]
        expected, dropped = _greedy_n_m(mask["w"].numpy(), drop.abs().numpy(), grow.abs().numpy(), fraction, n, m)
        assert np.array_equal(new.numpy() > 0, expected)
        assert new.sum() == mask["w"].sum() and (new.view(-1, m).sum(dim=1) <= n).all()
        returned += int(new.flatten()[torch.from_numpy(dropped)].sum())
    assert (returned > 0) == (n > m // 2)  # only with N > M/2 do dropped weights stay for want of room


def test_find_runs_rigl_and_set_in_a_2_4_pattern_on_the_language_task(tmp_path, capsys, one_thread):
    assert _language_find(tmp_path, "--prune.n_m", "2:4") == 0
    capsys.readouterr()
    run_dir = next((tmp_path / "runs").glob("ptb_lstm_*"))
    for variant in ("rigl", "set"):
        job = JobKey(0, 1, variant).directory(run_dir)
        mask, final = load_tensors(job / "mask.safetensors"), load_tensors(job / "weights_final.safetensors")
        start = load_tensors(job / "weights_init.safetensors")
        moved = sum(int((start[name] != 0).ne(mask[name]).sum()) for name in mask)
        assert moved > 0  # connections moved between the random start and the end
        assert all(not final[name][~mask[name]].any() for name in mask)
        kept = sum(int(value.sum()) for value in mask.values())
        assert 0 < kept <= sum(value.numel() for value in mask.values()) // 2
        assert all((value.flatten().view(-1, 4).sum(dim=1) <= 2).all() for value in mask.values())  # still 2:4


@pytest.mark.slow
def test_rigl_on_the_rl_task_is_refused_in_one_line_before_anything_is_written(tmp_path, capsys):
    root = tmp_path / "runs"
    assert cli.main(["find", "--preset", "ppo_tiny", "--variants", "rigl", "--quiet", "--no-report",
                     "--root", str(root)]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "ticketlab: error: variant 'rigl' regrows by the gradient of the training loss, which task 'rl' does not "
        "supply; use 'set' (random regrowth)"]
    assert not root.exists() or not [path for path in root.rglob("*") if path.is_file() and path.name != ".lock"]
