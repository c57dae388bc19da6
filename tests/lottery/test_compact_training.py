"""`train.kernels compact`: channel-pruned jobs train as the smaller network and agree with the masked dense ones.

Checked against the masked full network trained on the dense kernels (the same arithmetic up to rounding), on the
positions a numpy recomputation of the kept channels gives, and against an uninterrupted run after a kill."""

import copy
import dataclasses
import os
import csv
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from ticketlab.api import find_tickets
from ticketlab.config import ExperimentConfig, ModelConfig, PruneConfig, TrainConfig
from ticketlab.lottery.compact_training import compact_copy, train_as_compact
from ticketlab.lottery.context import ExperimentContext
from ticketlab.lottery.experiment import model_factory
from ticketlab.lottery.jobs import prepare_job
from ticketlab.lottery.keys import JobKey
from ticketlab.models import build_model, initialize
from ticketlab.pruning import prunable_weights
from ticketlab.pruning.channels import channel_groups
from ticketlab.store import load_tensors, read_json
from ticketlab.training.loop import CHECKPOINT_FILE, TrainingInterrupted
from ticketlab.training.optim import build_optimizer, optimizer_tensors

from benchmarks.channel_compact_speed import channel_pruned
from tests.export.test_export_run import _images

ROOT = Path(__file__).resolve().parents[2]


def test_positions_are_the_kept_rows_and_columns():
    model, masks, kept = channel_pruned("conv2", (1, 8, 8), 0.5, width=6)
    small = compact_copy(model, masks)
    first = channel_groups(model)[0]
    rows = np.flatnonzero(kept[first.name].numpy())
    full = model.state_dict()[f"{first.producer}.weight"].numpy()
    expected = np.arange(full.size).reshape(full.shape)[rows].ravel()  # numpy: the producer's kept filters
    assert small.positions[f"{first.producer}.weight"].tolist() == expected.tolist()
    consumer = f"{first.consumer}.weight"
    full_consumer = model.state_dict()[consumer].numpy()
    next_rows = np.flatnonzero(kept[channel_groups(model)[1].name].numpy())
    expected = np.arange(full_consumer.size).reshape(full_consumer.shape)[next_rows][:, rows].ravel()
    assert small.positions[consumer].tolist() == expected.tolist()
    for name, value in small.model.state_dict().items():  # every kept entry is the full network's
        if value.is_floating_point():
            assert torch.equal(small.gather(name, model.state_dict()[name]), value)


def test_positions_stay_exact_beyond_float32_integers():
    """A tensor of more than 2**24 entries: its indices do not fit a float32, the two-part encoding does."""
    model, masks, _ = channel_pruned("conv2", (1, 2, 2), 0.5, width=1366)  # the second conv: 1366x1366x3x3
    small = compact_copy(model, masks)
    name = max(masks, key=lambda name: masks[name].numel())
    assert masks[name].numel() > 1 << 24
    assert torch.equal(small.gather(name, torch.arange(masks[name].numel()).view(masks[name].shape)).reshape(-1),
                       small.positions[name])
    assert torch.all(masks[name].reshape(-1)[small.positions[name]] == 1)


def test_nothing_removed_means_no_compact_copy():
    model = initialize(build_model("conv2", (1, 8, 8), 10, width=4), "kaiming_normal", 0)
    assert compact_copy(model, {name: torch.ones_like(value) for name, value in prunable_weights(model).items()}) is None
    zeroed = copy.deepcopy(model)  # values that are 0 but not masked may grow: they remove nothing
    with torch.no_grad():
        zeroed.features[0].weight[0].zero_()
    assert compact_copy(zeroed, {name: torch.ones_like(value) for name, value in prunable_weights(model).items()}) is None


@pytest.mark.parametrize("name,shape,kwargs", [("conv2", (3, 8, 8), {"width": 8}), ("resnet20", (3, 8, 8), {"width": 4}),
                                              ("lenet300_100", (1, 8, 8), {})])
def test_training_the_compact_copy_is_training_the_masked_network(one_thread, name, shape, kwargs):
    """SGD with momentum and weight decay, then Adam from that optimizer state, five steps each: the written-back
    weights, BatchNorm statistics and optimizer state match the masked full network's to rounding."""
    model, masks, _ = channel_pruned(name, shape, 0.4, **kwargs)
    small = compact_copy(model, masks)
    generator = torch.Generator().manual_seed(1)
    inputs, labels = torch.randn(16, *shape, generator=generator), torch.randint(0, 10, (16,), generator=generator)
    small_masks = small.masks(masks)

    def train(network, network_masks, config, state=None):
        optimizer = build_optimizer(list(network.parameters()), config)
        if state is not None:
            from ticketlab.training.optim import load_optimizer_tensors

            load_optimizer_tensors(optimizer, state)
        parameters = dict(network.named_parameters())
        for _ in range(5):
            optimizer.zero_grad()
            F.cross_entropy(network(inputs), labels).backward()
            for key, mask in network_masks.items():
                parameters[key].grad.mul_(mask)
            optimizer.step()
            with torch.no_grad():
                for key, mask in network_masks.items():
                    parameters[key].mul_(mask)
        return optimizer_tensors(optimizer)

    sgd = TrainConfig(optimizer="sgd", lr=0.05, momentum=0.9, weight_decay=1e-3)
    full_state = train(model, masks, sgd)
    small_state = train(small.model, small_masks, sgd)
    for key, value in small.optimizer_state(full_state).items():
        torch.testing.assert_close(value, small_state[key], rtol=1e-4, atol=1e-5)
    adam = TrainConfig(optimizer="adam", lr=1e-3)
    train(model, masks, adam)
    train(small.model, small_masks, adam)
    trained = copy.deepcopy(model)
    small.write_back(trained)
    for key, value in model.state_dict().items():
        if key in masks:
            assert torch.all(trained.state_dict()[key][masks[key] == 0] == 0)
        kept = small.positions.get(key)
        if kept is None:
            assert torch.equal(trained.state_dict()[key], value)
        else:
            torch.testing.assert_close(trained.state_dict()[key].reshape(-1)[kept], value.reshape(-1)[kept],
                                       rtol=1e-4, atol=1e-5)


def _config(kernels):
    return ExperimentConfig(
        model=ModelConfig(name="conv2", width=8),
        train=TrainConfig(optimizer="sgd", lr=0.05, momentum=0.9, batch_size=40, steps="40it", eval_every="10it",
                          kernels=kernels),
        prune=PruneConfig(rate=0.5, output_rate=0.2, levels=3, unit="channel"),
        variants=("iterative_reset", "random_pruning"), trials=1)


@pytest.fixture(scope="module")
def channel_runs(tmp_path_factory, one_thread_for_module):
    splits = _images()
    root = tmp_path_factory.mktemp("runs")
    runs = {kernels: find_tickets(_config(kernels), root=root / kernels, data=splits, progress=False,
                                  report=False).run_dir
            for kernels in ("dense", "compact")}
    return runs, splits


def _rows(run_dir):
    return {(row["variant"], row["level"]): row for row in csv.DictReader(open(run_dir / "results.csv"))}


def test_compact_run_agrees_with_the_dense_kernels(channel_runs):
    runs, _ = channel_runs
    dense, compact = _rows(runs["dense"]), _rows(runs["compact"])
    assert dense.keys() == compact.keys() and len(dense) == 8
    for key, row in dense.items():
        assert compact[key]["early_stop_iteration"] == row["early_stop_iteration"], key
        assert abs(float(compact[key]["early_stop_test_accuracy"]) - float(row["early_stop_test_accuracy"])) <= 0.01
        assert compact[key]["weights_remaining_percent"] == row["weights_remaining_percent"]
    for job in (runs["compact"] / "trial_0").glob("level_0[1-3]/*"):
        choice = read_json(job / "kernels.json")
        assert choice["kernels"] == "compact" and choice["compact"] is True
        assert choice["compact_parameters"] < choice["parameters"]
        weights = load_tensors(job / "weights_final.safetensors")
        mask = load_tensors(job / "mask.safetensors") if (job / "mask.safetensors").exists() else None
        dense_weights = load_tensors(runs["dense"] / job.relative_to(runs["compact"]) / "weights_final.safetensors")
        assert weights.keys() == dense_weights.keys()
        for name, value in weights.items():
            assert value.shape == dense_weights[name].shape
            if "running" not in name:
                torch.testing.assert_close(value, dense_weights[name], rtol=1e-3, atol=1e-4)
            if mask is not None and name in mask:
                assert torch.all(value[~mask[name]] == 0)
    assert read_json(runs["compact"] / "trial_0/level_00/dense/kernels.json")["compact"] is False


def test_a_killed_compact_job_resumes_to_the_same_bytes(channel_runs, tmp_path):
    runs, splits = channel_runs
    run_dir = tmp_path / runs["compact"].name
    shutil.copytree(runs["compact"], run_dir)
    key = JobKey(0, 2, "iterative_reset")
    job_dir = key.directory(run_dir)
    for name in ("result.json", "weights_final.safetensors", "metrics.jsonl", "kernels.json"):
        (job_dir / name).unlink()
    config = _config("compact").validate()
    ctx = ExperimentContext(config=config, run_dir=run_dir, data=splits, make_model=model_factory(config, splits, None))
    start = prepare_job(ctx, key)
    with pytest.raises(TrainingInterrupted):
        train_as_compact(ctx.task.train, start.model, ctx.data, config.train, masks=start.mask,
                         data_seed=start.data_seed, start_step=start.start_step, total_steps=start.total_steps,
                         job_dir=job_dir, checkpoint_interval_s=0, stop_after_step=20)
    checkpoint = load_tensors(job_dir / CHECKPOINT_FILE)
    model_part = {name.removeprefix("model."): value for name, value in checkpoint.items() if name.startswith("model.")}
    assert all(model_part[name].numel() < mask.numel() for name, mask in start.mask.items())  # the compact network
    rerun = find_tickets(config, root=tmp_path, data=splits, progress=False, report=False).run_dir
    assert rerun == run_dir
    assert _rows(run_dir) == _rows(runs["compact"])
    assert (job_dir / "weights_final.safetensors").read_bytes() == (
        key.directory(runs["compact"]) / "weights_final.safetensors").read_bytes()


def test_kernels_compact_on_the_command_line(tmp_path, capsys):
    from ticketlab.cli import main

    assert main(["find", "--kernels", "compactest"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "ticketlab: error: unknown train.kernels 'compactest'; allowed: dense, sparse, auto, compact"]


def test_the_documented_command_asks_for_compact_channel_training(monkeypatch):
    """docs/export.md's command line builds the config it says (the run itself needs CIFAR-10: recorded, not run)."""
    import ticketlab.api
    from ticketlab.cli import main

    line = next(line for line in (ROOT / "docs/export.md").read_text().splitlines()
                if line.startswith("ticketlab find") and "--kernels compact" in line)
    calls = []

    def recorded(config, **options):
        calls.append(config)
        raise KeyboardInterrupt  # stop here: nothing trains

    monkeypatch.setattr(ticketlab.api, "find_tickets", recorded)
    main(line.split()[1:] + ["--quiet", "--no-report"])  # the CLI reports the interrupt and returns
    assert calls and calls[0].train.kernels == "compact" and calls[0].prune.unit == "channel"
    assert calls[0].model.name == "conv2"


def test_auto_trains_compact_and_a_checkpoint_keeps_the_way_a_job_started(tmp_path):
    """'auto' compacts a channel job; a job with a checkpoint written on the full network (started before, or under
    another choice) resumes on the full network, whose shapes the checkpoint has."""
    splits = _images()
    config = _config("auto").validate()
    run_dir = tmp_path / "run"
    find_tickets(config.replace(**{"prune.levels": 1}), root=run_dir, data=splits, progress=False, report=False)
    run = next(run_dir.iterdir())
    ctx = ExperimentContext(config=config, run_dir=run, data=splits, make_model=model_factory(config, splits, None))
    key = JobKey(0, 1, "iterative_reset")
    choice = read_json(key.directory(run) / "kernels.json")
    assert choice["kernels"] == "auto" and choice["compact"] is True
    job_dir = tmp_path / "job"
    start = prepare_job(ctx, key)
    full_config = dataclasses.replace(config.train, kernels="dense")
    with pytest.raises(TrainingInterrupted):  # a checkpoint of the full network, and no compact record
        ctx.task.train(copy.deepcopy(start.model), ctx.data, full_config, masks=start.mask, data_seed=start.data_seed,
                       start_step=start.start_step, total_steps=start.total_steps, job_dir=job_dir,
                       checkpoint_interval_s=0, stop_after_step=20)
    seen = []
    train = lambda model, *args, **kwargs: seen.append(model) or ctx.task.train(model, *args, **kwargs)  # noqa: E731
    train_as_compact(train, start.model, ctx.data, config.train, masks=start.mask, data_seed=start.data_seed,
                     start_step=start.start_step, total_steps=start.total_steps, job_dir=job_dir)
    assert seen == [start.model]


def test_the_installed_executable_trains_channel_levels_compact(tmp_path):
    """`ticketlab find ... --kernels compact` as a user types it, on a generated CIFAR-10 archive: exit 0, and the
    pruned levels' jobs say they trained compact."""
    from tests.regression.scenarios import _write_cifar

    _write_cifar(tmp_path / "cifar")
    executable = Path(sys.executable).with_name("ticketlab")
    done = subprocess.run(
        [str(executable), "find", "--preset", "conv2_cifar10", "--data-dir", str(tmp_path / "cifar"),
         "--data.validation_size", "10", "--model.width", "4", "--steps", "4it", "--train.eval_every", "2it",
         "--train.batch_size", "10", "--trials", "1", "--levels", "2", "--variants", "iterative_reset",
         "--prune.unit", "channel", "--prune.rate", "0.5", "--kernels", "compact", "--root", str(tmp_path / "runs"),
         "--quiet", "--no-report", "--data.cache_dir", str(tmp_path / "cache")],
        capture_output=True, text=True, timeout=300, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert done.returncode == 0, done.stderr[-2000:]
    (run_dir,) = (tmp_path / "runs").iterdir()
    for level in (1, 2):
        choice = read_json(run_dir / f"trial_0/level_0{level}/iterative_reset/kernels.json")
        assert choice["compact"] is True and choice["compact_parameters"] < choice["parameters"]


def test_networks_that_draw_dropout_noise_train_on_the_full_network():
    from ticketlab.lottery.compact_training import has_dropout

    assert has_dropout(build_model("conv2", (1, 8, 8), 10, width=4, dropout=0.5))
    assert not has_dropout(build_model("conv2", (1, 8, 8), 10, width=4))
    assert has_dropout(torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Dropout2d(0.1), torch.nn.Linear(4, 2)))
    assert not has_dropout(torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Dropout(0.0), torch.nn.Linear(4, 2)))
