"""Gradual magnitude pruning (Zhu & Gupta 2017) against independent computations: the mask is updated at t0,
t0 + Δt, ... and t_end; the sparsity at each update is the cubic schedule (recomputed here); the mask at an update
is a numpy top-k of the weights' magnitudes at that step; pruned weights are exactly 0 after training, the stored
mask is the final one and the early-stopping point one under it; a job killed in the middle of its schedule
resumes to the same bytes (the mask in force is in the checkpoint); the job trains alone beside stacked jobs and
on the language task; bad schedules are refused in one line."""

import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from ticketlab import cli
from ticketlab.api import find_tickets
from ticketlab.config import ExperimentConfig, ModelConfig, PruneConfig, TrainConfig
from ticketlab.lottery.experiment import model_factory
from ticketlab.lottery.graph import trains_alone
from ticketlab.lottery.jobs import ExperimentContext, JobKey, prepare_job
from ticketlab.lottery.variants import gmp
from ticketlab.pruning import prunable_weights
from ticketlab.store import load_tensors, load_tensors_and_metadata, read_json
from ticketlab.training.loop import TrainingInterrupted
from independent_checks import assert_rows_match, top_magnitudes

TOTAL, T0, T_END, EVERY, S_I = 20, 2, 12, 3, 0.1
UPDATES = [2, 5, 8, 11, 12]  # t0 + kΔt before t_end, then t_end (Δt does not divide the span here)
NAMES = ("layers.1.weight", "layers.3.weight")
SIZES = {"layers.1.weight": 24 * 16, "layers.3.weight": 16 * 10}


def _config(variants=("iterative_reset", "gmp")):
    return ExperimentConfig(
        model=ModelConfig(name="mlp", hidden=(16,)),
        train=TrainConfig(optimizer="sgd", lr=0.1, momentum=0.9, batch_size=50, steps=f"{TOTAL}it",
                          eval_every="5it"),
        prune=PruneConfig(rate=0.5, output_rate=0.5, levels=2, gmp_start=f"{T0}it", gmp_end=f"{T_END}it",
                          gmp_every=f"{EVERY}it", gmp_initial_sparsity=S_I),
        variants=variants,
        trials=1,
    )


def _find(root, data):  # population None: the IMP jobs stack, the gmp jobs train alone
    return find_tickets(_config(), root=root, data=data, progress=False, report=False, population=None)


def _cubic(step, final):
    return final + (S_I - final) * (1 - (step - T0) / (T_END - T0)) ** 3


@pytest.fixture(scope="module")
def clean(tmp_path_factory, tiny_data_for_module, one_thread_for_module):
    """A finished run, and every mask update of its gmp jobs: (final keep, step, weights, mask in, mask out)."""
    updates = []
    original = gmp.GradualMagnitudeSchedule.__call__

    def recording(self, step, model, mask):
        new = original(self, step, model, mask)
        if new is not None:
            weights = {name: value.detach().numpy().copy() for name, value in self.prunable(model).items()}
            in_force = {name: value.numpy().copy() for name, value in mask.items()}
            updates.append((self.final_keep, step, weights, in_force,
                            {name: value.numpy().copy() for name, value in new.items()}))
        return new

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(gmp.GradualMagnitudeSchedule, "__call__", recording)
        result = _find(tmp_path_factory.mktemp("gmp"), tiny_data_for_module)
    return result, updates


def _level(final_keep):
    return {192: 1, 96: 2}[final_keep["layers.1.weight"]]


def test_the_mask_is_updated_on_the_schedule_and_its_sparsity_is_the_cubic(clean):
    _, updates = clean
    by_level = {}
    for final_keep, step, _, _, new in updates:
        by_level.setdefault(_level(final_keep), []).append((step, new))
    assert sorted(by_level) == [1, 2]
    for level, steps in by_level.items():
        assert [step for step, _ in steps] == UPDATES
        final = 1 - 0.5 ** level  # both layers lose half their weights per level (rate = output_rate = 0.5)
        for step, new in steps:
            for name in NAMES:
                size = SIZES[name]
                expected = _cubic(step, final)
                pruned = size - int(new[name].sum())
                assert pruned == round(expected * size)
                assert abs(pruned / size - expected) <= 0.5 / size
        assert all(1 - new[name].mean() == pytest.approx(final) for name in NAMES for _, new in steps[-1:])


def test_the_mask_at_an_update_is_the_top_k_of_the_weights_at_that_step(clean):
    _, updates = clean
    for _, step, weights, in_force, new in updates:
        for name in NAMES:
            expected = top_magnitudes(weights[name], int(new[name].sum()), in_force[name])
            assert np.array_equal(new[name] > 0, expected), (step, name)
            # pruned weights are 0, so ranking all magnitudes gives the same mask
            assert np.array_equal(new[name] > 0, top_magnitudes(weights[name], int(new[name].sum())))
            assert not np.any(weights[name][in_force[name] == 0])  # the weights pruned earlier were still 0


def test_pruned_weights_are_zero_after_training_and_the_stored_mask_is_the_final_one(clean):
    result, updates = clean
    run_dir = result.run_dir
    last = {_level(final_keep): new for final_keep, _, _, _, new in updates}
    for level in (1, 2):
        job = JobKey(0, level, "gmp").directory(run_dir)
        mask, final = load_tensors(job / "mask.safetensors"), load_tensors(job / "weights_final.safetensors")
        start = load_tensors(job / "weights_init.safetensors")
        dense_start = load_tensors(JobKey(0, 0, "dense").directory(run_dir) / "weights_init.safetensors")
        for name in NAMES:
            assert np.array_equal(mask[name].numpy(), last[level][name] > 0)
            assert not final[name][~mask[name]].any()  # exactly 0
            assert final[name][mask[name]].abs().min() > 0
            assert torch.equal(start[name], dense_start[name])  # a fresh dense start: the trial's θ0
        record = read_json(job / "result.json")
        assert record["weights_remaining_percent"] == pytest.approx(100 * 0.5 ** level)
        assert record["start_step"] == 0 and record["final_iteration"] == TOTAL
        assert record["early_stop_iteration"] > T_END  # the early-stopping point is under the final mask


def test_gmp_jobs_stacked_with_the_imp_jobs_train_as_they_train_alone(clean, tmp_path, tiny_data_for_module):
    """The population asks each member's schedule at its update steps and installs the answer as the engine does:
    the same masks, and the same numbers to float rounding (the stacked kernels round sizes that are not a SIMD
    multiple apart at 1e-8 a step)."""
    assert not trains_alone(JobKey(0, 1, "gmp"))
    stacked = clean[0]
    assert read_json(stacked.run_dir / "population.json")["population"] > 1
    alone = find_tickets(_config(), root=tmp_path, data=tiny_data_for_module, progress=False, report=False,
                         population=1)
    assert_rows_match(stacked.rows, alone.rows)
    for level in (1, 2):
        job = JobKey(0, level, "gmp")
        assert torch.equal(load_tensors(job.directory(stacked.run_dir) / "mask.safetensors")["layers.1.weight"],
                           load_tensors(job.directory(alone.run_dir) / "mask.safetensors")["layers.1.weight"])


def test_a_job_killed_in_the_middle_of_its_schedule_resumes_to_the_same_bytes(clean, tmp_path, tiny_data_for_module):
    result, _ = clean
    run_dir = tmp_path / result.run_dir.name
    shutil.copytree(result.run_dir, run_dir)
    key = JobKey(0, 2, "gmp")
    job_dir = key.directory(run_dir)
    for name in ("result.json", "weights_final.safetensors", "metrics.jsonl", "mask.safetensors"):
        (job_dir / name).unlink()
    config = _config().validate()
    ctx = ExperimentContext(config=config, run_dir=run_dir, data=tiny_data_for_module,
                            make_model=model_factory(config, tiny_data_for_module, None))
    start = prepare_job(ctx, key)
    with pytest.raises(TrainingInterrupted):  # the last checkpoint is at step 10: updates at 11 and 12 remain
        ctx.task.train(start.model, ctx.data, config.train, masks=start.mask, data_seed=start.data_seed,
                       start_step=start.start_step, total_steps=start.total_steps, job_dir=job_dir,
                       checkpoint_interval_s=0, stop_after_step=12, mask_schedule=start.mask_schedule)
    tensors, metadata = load_tensors_and_metadata(job_dir / "checkpoint.safetensors")
    assert metadata["step"] == "10"
    in_force = {name: tensors[f"mask.{name}"] for name in NAMES}
    assert [int((~in_force[name]).sum()) for name in NAMES] == [round(_cubic(8, 0.75) * SIZES[name]) for name in NAMES]
    rerun = _find(tmp_path, tiny_data_for_module)
    assert rerun.rows == result.rows
    for name in ("weights_final.safetensors", "mask.safetensors"):
        assert (job_dir / name).read_bytes() == (key.directory(result.run_dir) / name).read_bytes()


def test_global_scope_ranks_all_layers_together_on_the_cubic():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 5))
    total = 12 * 8 + 8 * 5
    schedule = gmp.GradualMagnitudeSchedule(gmp.CubicSchedule(T0, T_END, EVERY, S_I), final_keep=total // 5,
                                            prunable=prunable_weights)
    mask = {name: torch.ones_like(weight) for name, weight in prunable_weights(model).items()}
    assert schedule(T0 + 1, model, mask) is None  # no update between t0 and t0 + Δt
    for step in UPDATES:
        new = schedule(step, model, mask)
        kept = sum(int(value.sum()) for value in new.values())
        assert total - kept == round(_cubic(step, 1 - (total // 5) / total) * total)
        weights = [weight.detach().numpy() for weight in prunable_weights(model).values()]
        flat = np.concatenate([weight.ravel() for weight in weights])
        eligible = np.concatenate([value.numpy().ravel() for value in mask.values()])
        expected = top_magnitudes(flat, kept, eligible)
        assert np.array_equal(np.concatenate([value.numpy().ravel() for value in new.values()]) > 0, expected)
        with torch.no_grad():  # as the engine installs it
            for name, weight in prunable_weights(model).items():
                weight.mul_(new[name])
                weight.add_(0.01 * torch.randn_like(weight) * new[name])  # training moves the survivors
        mask = new
    assert kept == total // 5


@pytest.mark.parametrize("extra, fragment", [
    (["--prune.gmp_every", "0it"], "prune.gmp_every '0it' must be at least 1 iteration"),
    (["--prune.gmp_end", "20it"], "prune.gmp_end '20it' must be before the end of training (train.steps '20it')"),
    (["--prune.gmp_start", "25it"], "prune.gmp_start '25it' must be before the end of training"),
    (["--prune.gmp_start", "8it", "--prune.gmp_end", "4it"], "prune.gmp_end '4it' must not come before"),
    (["--prune.gmp_initial_sparsity", "1"], "prune.gmp_initial_sparsity"),
])
def test_a_bad_schedule_is_refused_in_one_line(extra, fragment, tmp_path, capsys):
    root = tmp_path / "runs"
    code = cli.main(["find", "--model.hidden", "16", "--steps", "20it", "--levels", "1", "--trials", "1",
                     "--variants", "gmp", "--quiet", "--no-report", "--root", str(root), *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("ticketlab: error: "), err
    assert fragment in err[0], err[0]
    assert not root.exists() or not [path for path in root.rglob("*") if path.is_file() and path.name != ".lock"]


def test_the_installed_entry_point_refuses_a_schedule_past_the_end(tmp_path):
    completed = subprocess.run(
        [sys.executable, "-m", "ticketlab", "find", "--steps", "2ep", "--prune.gmp_end", "3ep", "--variants", "gmp",
         "--root", str(tmp_path / "runs")], capture_output=True, text=True, timeout=120)
    err = completed.stderr.strip().splitlines()
    assert completed.returncode == 2 and len(err) == 1, completed.stderr
    assert err[0] == "ticketlab: error: prune.gmp_end '3ep' must be before the end of training (train.steps '2ep')"


def test_gradual_magnitude_pruning_on_the_language_task(tmp_path, capsys, one_thread):
    corpus = tmp_path / "data"
    corpus.mkdir()
    text = " the cat sat on the mat \n the dog sat \n a cat and a dog \n"
    for split, copies in (("train", 8), ("valid", 1), ("test", 1)):
        (corpus / f"ptb.{split}.txt").write_text(text * copies)
    argv = ["find", "--preset", "lstm_ptb_small", "--data-dir", str(corpus), "--root", str(tmp_path / "runs"),
            "--quiet", "--trials", "1", "--levels", "1", "--steps", "8it", "--rewind", "0it",
            "--train.milestones", "6it", "--train.eval_every", "4it", "--prune.gmp_start", "1it",
            "--prune.gmp_end", "5it", "--prune.gmp_every", "2it", "--model.hidden", "8,8",
            "--data.sequence_length", "5", "--train.batch_size", "2", "--workers", "1", "--variants", "gmp"]
    assert cli.main(argv) == 0
    capsys.readouterr()
    run_dir = next((tmp_path / "runs").glob("ptb_lstm_*"))
    job = JobKey(0, 1, "gmp").directory(run_dir)
    mask, final = load_tensors(job / "mask.safetensors"), load_tensors(job / "weights_final.safetensors")
    record = read_json(job / "result.json")
    kept = sum(int(value.sum()) for value in mask.values())
    total = sum(value.numel() for value in mask.values())
    assert record["weights_remaining_percent"] == pytest.approx(100 * kept / total) and 0 < kept < total
    for name, value in mask.items():
        assert not final[name][~value].any()
    assert record["early_stop_iteration"] == 8  # the evaluation at 4 ran under an earlier mask
