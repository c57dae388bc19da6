"""Learning-rate rewinding (Renda et al. 2020) against independent computations: its masks are the magnitudes of
the trained weights it prunes, it starts from those trained weights (not from θk), it trains with the original
schedule from step k to the end (recomputed here from the cosine formula), its pruned weights stay 0, an
interrupted job resumes to the same bytes, and it runs on the language task through the command line."""

import math
import shutil

import numpy as np
import pytest
import torch

from ticketlab import cli
from ticketlab.config import ExperimentConfig, ModelConfig, PruneConfig, TrainConfig
from ticketlab.api import find_tickets
from ticketlab.lottery.experiment import model_factory
from ticketlab.lottery.jobs import DENSE, ExperimentContext, JobKey, prepare_job
from ticketlab.store import load_tensors, read_json
from torch.optim.optimizer import register_optimizer_step_pre_hook

from ticketlab.training.loop import TrainingInterrupted
from independent_checks import top_magnitudes

TOTAL, K, LR = 20, 5, 0.1
NAMES = ("layers.1.weight", "layers.3.weight")
VARIANTS = ("lr_rewind", "lr_rewind_oneshot")


def _config():
    return ExperimentConfig(
        model=ModelConfig(name="mlp", hidden=(16,)),
        train=TrainConfig(optimizer="sgd", lr=LR, momentum=0.9, schedule="cosine", batch_size=50,
                          steps=f"{TOTAL}it", eval_every="10it"),
        prune=PruneConfig(rate=0.5, output_rate=0.5, levels=2, rewind=f"{K}it"),
        variants=VARIANTS,
        trials=1,
    )


def _find(root, data):
    return find_tickets(_config(), root=root, data=data, progress=False, report=False, population=1)


@pytest.fixture(scope="module")
def clean(tmp_path_factory, tiny_data_for_module, one_thread_for_module):
    """A finished run and the learning rate of every optimizer step it took, in order."""
    rates = []
    handle = register_optimizer_step_pre_hook(
        lambda optimizer, args, kwargs: rates.append(optimizer.param_groups[0]["lr"]))
    try:
        result = _find(tmp_path_factory.mktemp("lr_rewind"), tiny_data_for_module)
    finally:
        handle.remove()
    return result, rates


def _tensors(run_dir, level, variant, name):
    return {key: value.numpy() for key, value in load_tensors(JobKey(0, level, variant).directory(run_dir)
                                                               / name).items()}


def test_the_schedule_is_the_original_one_from_step_k(clean):
    _, rates = clean
    cosine = [LR * 0.5 * (1 + math.cos(math.pi * step / TOTAL)) for step in range(TOTAL)]
    assert rates[:TOTAL] == pytest.approx(cosine)  # the dense run: the whole schedule
    retrained = rates[TOTAL:]
    assert len(retrained) == 2 * len(VARIANTS) * (TOTAL - K)  # four jobs, each from step k to the end
    for job in range(2 * len(VARIANTS)):
        assert retrained[job * (TOTAL - K):(job + 1) * (TOTAL - K)] == pytest.approx(cosine[K:])


def test_masks_are_the_trained_magnitudes_and_the_start_is_the_trained_weights(clean):
    run_dir = clean[0].run_dir
    dense_final = _tensors(run_dir, 0, DENSE, "weights_final.safetensors")
    parents = {("lr_rewind", 1): (dense_final, None), ("lr_rewind_oneshot", 1): (dense_final, None),
               ("lr_rewind_oneshot", 2): (dense_final, None),
               ("lr_rewind", 2): (_tensors(run_dir, 1, "lr_rewind", "weights_final.safetensors"),
                                  _tensors(run_dir, 1, "lr_rewind", "mask.safetensors"))}
    for (variant, level), (trained, eligible) in parents.items():
        mask = _tensors(run_dir, level, variant, "mask.safetensors")
        start = _tensors(run_dir, level, variant, "weights_init.safetensors")
        final = _tensors(run_dir, level, variant, "weights_final.safetensors")
        for name in NAMES:
            size = trained[name].size
            assert mask[name].sum() == round(size * 0.5 ** level)
            expected = top_magnitudes(trained[name], int(mask[name].sum()),
                                       None if eligible is None else eligible[name])
            assert np.array_equal(mask[name], expected)
            assert np.array_equal(start[name], trained[name] * mask[name])  # trained weights, not θk
            assert not np.any(final[name][~mask[name]])  # pruned weights stay 0
        record = read_json(JobKey(0, level, variant).directory(run_dir) / "result.json")
        assert record["start_step"] == K and record["final_iteration"] == TOTAL


def test_an_interrupted_job_resumes_to_the_same_bytes(clean, tmp_path, tiny_data_for_module):
    result, _ = clean
    run_dir = tmp_path / result.run_dir.name
    shutil.copytree(result.run_dir, run_dir)
    key = JobKey(0, 2, "lr_rewind")
    job_dir = key.directory(run_dir)
    for name in ("result.json", "weights_final.safetensors", "metrics.jsonl"):
        (job_dir / name).unlink()
    config = _config().validate()
    ctx = ExperimentContext(config=config, run_dir=run_dir, data=tiny_data_for_module,
                            make_model=model_factory(config, tiny_data_for_module, None))
    start = prepare_job(ctx, key)
    with pytest.raises(TrainingInterrupted):
        ctx.task.train(start.model, ctx.data, config.train, masks=start.mask, data_seed=start.data_seed,
                       start_step=start.start_step, total_steps=start.total_steps, job_dir=job_dir,
                       checkpoint_interval_s=0, stop_after_step=K + 7)
    rerun = _find(tmp_path, tiny_data_for_module)
    assert rerun.rows == result.rows
    assert (job_dir / "weights_final.safetensors").read_bytes() == (
        key.directory(result.run_dir) / "weights_final.safetensors").read_bytes()


def test_learning_rate_rewinding_on_the_language_task(tmp_path, capsys, one_thread):
    corpus = tmp_path / "data"
    corpus.mkdir()
    text = " the cat sat on the mat \n the dog sat \n a cat and a dog \n"
    for split, copies in (("train", 8), ("valid", 1), ("test", 1)):
        (corpus / f"ptb.{split}.txt").write_text(text * copies)
    rates = []
    handle = register_optimizer_step_pre_hook(
        lambda optimizer, args, kwargs: rates.append(optimizer.param_groups[0]["lr"]))
    argv = ["find", "--preset", "lstm_ptb_small", "--data-dir", str(corpus), "--root", str(tmp_path / "runs"),
            "--quiet", "--trials", "1", "--levels", "1", "--rewind", "2it", "--steps", "6it",
            "--train.milestones", "4it", "--train.eval_every", "3it", "--model.hidden", "8,8",
            "--data.sequence_length", "5", "--train.batch_size", "2", "--workers", "1", "--variants", "lr_rewind"]
    try:
        assert cli.main(argv) == 0
    finally:
        handle.remove()
    capsys.readouterr()
    assert len(rates) == 6 + 4 and rates[6:] == rates[2:6]  # the dense run's schedule from step 2
    assert rates[4] < rates[3]  # the milestone at step 4 is in the replayed part
    run_dir = next((tmp_path / "runs").glob("ptb_lstm_*"))
    job = JobKey(0, 1, "lr_rewind").directory(run_dir)
    mask, start = load_tensors(job / "mask.safetensors"), load_tensors(job / "weights_init.safetensors")
    final = load_tensors(job / "weights_final.safetensors")
    dense_final = load_tensors(JobKey(0, 0, DENSE).directory(run_dir) / "weights_final.safetensors")
    for name, kept in mask.items():
        assert 0 < kept.float().mean() < 1
        assert torch.equal(start[name], dense_final[name] * kept)
        assert not final[name][~kept].any()


def test_a_stacked_population_draws_the_same_tickets(clean, tmp_path, tiny_data_for_module):
    stacked = find_tickets(_config(), root=tmp_path, data=tiny_data_for_module, progress=False, report=False,
                           population=None)
    for variant in VARIANTS:
        for level in (1, 2):
            alone = _tensors(clean[0].run_dir, level, variant, "mask.safetensors")
            together = _tensors(stacked.run_dir, level, variant, "mask.safetensors")
            assert all(np.array_equal(alone[name], together[name]) for name in NAMES)
    accuracy = {(row["level"], row["variant"]): row["final_test_accuracy"] for row in clean[0].rows}
    assert {(row["level"], row["variant"]): row["final_test_accuracy"] for row in stacked.rows} == pytest.approx(
        accuracy, abs=0.02)


def test_fine_tuning_trains_at_the_final_learning_rate(tmp_path, tiny_data_for_module, one_thread_for_module):
    """Renda et al.'s fine-tuning baseline retrains at the original schedule's final rate (not the schedule replayed
    from 0), for prune.finetune_steps = T - k: the same budget as the rewinding variants."""
    config = _config().replace(variants=["finetune"], **{"prune.finetune_steps": f"{TOTAL - K}it"})
    rates = []
    handle = register_optimizer_step_pre_hook(
        lambda optimizer, args, kwargs: rates.append(optimizer.param_groups[0]["lr"]))
    try:
        find_tickets(config, root=tmp_path, data=tiny_data_for_module, progress=False, report=False, population=1)
    finally:
        handle.remove()
    final = LR * 0.5 * (1 + math.cos(math.pi * (TOTAL - 1) / TOTAL))
    assert len(rates) == TOTAL + 2 * (TOTAL - K)
    assert rates[TOTAL:] == pytest.approx([final] * (2 * (TOTAL - K)))
