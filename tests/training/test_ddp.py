"""Data parallelism under torchrun (gloo, 2 processes on loopback): the same weights as one process training the
same global batch, identical ranks, rank 0 alone writing, and a killed rank resuming on the rerun.

Tolerance: a 2-rank run sums each gradient in two halves (each rank's mean over its 1/2 of the batch, then DDP's
average of the two), one process in one pass, so the float32 rounding differs from the first step on; over the
short runs here the weights stay within 1e-5 (train_model, SGD) and 2e-5 (an experiment of two Adam jobs, where
the pruning threshold sees the dense job's difference) of the single-process run, against weights of order 0.1-1.
Between two 2-rank runs (interrupted or not) the numbers are bitwise equal.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file
from torch import nn

from ticketlab.cli import main
from ticketlab.config import TrainConfig
from ticketlab.errors import ConfigError
from ticketlab.models import initialize
from ticketlab.models.conv import SeededDropout, set_noise_seed
from ticketlab.pruning import keep_top, prunable_weights, random_scores
from ticketlab.training.distributed import check_batch_size
from ticketlab.training.loop import TrainingInterrupted, train_model

pytestmark = pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                                reason="torch.distributed with gloo is not available")

CONFIG = TrainConfig(optimizer="sgd", lr=0.05, momentum=0.9, batch_size=32, steps="60it", eval_every="20it")
TRAIN_TOLERANCE = 1e-5
EXPERIMENT_TOLERANCE = 2e-5
# one trial, the dense job and one pruned level; long enough (160 steps a job, a checkpoint every 20) to be killed
FIND_ARGS = ["find", "--trials", "1", "--levels", "1", "--variants", "iterative_reset", "--steps", "160it",
             "--train.eval_every", "20it", "--train.optimizer", "adam", "--train.lr", "1e-3",
             "--data.train_size", "800", "--model.hidden", "32,16", "--checkpoint-every", "0", "--no-report", "--quiet"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _rank_environment(rank: int, world_size: int, port: int) -> dict[str, str]:
    """What torchrun puts in each worker's environment."""
    return {"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world_size),
            "LOCAL_WORLD_SIZE": str(world_size), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}


def _spawn(function, *args) -> None:
    """Run function(rank, port, *args) in 2 spawned processes joined by the environment torchrun would set."""
    mp.spawn(function, args=(_free_port(), *args), nprocs=2, join=True)


# --- train_model across 2 ranks -----------------------------------------------------------------------------


class DropoutMLP(nn.Module):
    """An MLP with ticketlab's seeded dropout, to check that shards drop what one process drops."""

    def __init__(self):
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(24, 32), nn.ReLU(), SeededDropout(0.2, 0), nn.Linear(32, 10))

    def forward(self, inputs):
        return self.layers(inputs)


def _model_and_masks():
    model = initialize(DropoutMLP(), "glorot_normal", 0)
    weights = prunable_weights(model)
    masks = keep_top(random_scores(weights, seed=1), {name: w.numel() // 2 for name, w in weights.items()})
    return model, masks


def _seed_dropout(model):
    def hook(batch, seed):
        set_noise_seed(model, seed)
        return batch

    return hook


def _train_two_ranks(rank, port, data, job_dir, out_dir):
    os.environ.update(_rank_environment(rank, 2, port))
    torch.set_num_threads(1)
    from ticketlab.training.distributed import from_environment

    group = from_environment(torch.device("cpu"))
    leader_only = {"job_dir": job_dir, "checkpoint_interval_s": 0} if rank == 0 else {}
    model, masks = _model_and_masks()
    if rank == 1:
        with torch.no_grad():  # a follower's own weights must not matter: it starts from the leader's
            for parameter in model.parameters():
                parameter.normal_()
    try:
        train_model(model, data, CONFIG, masks=masks, data_seed=3, augment=_seed_dropout(model), group=group,
                    stop_after_step=47, **leader_only)
    except TrainingInterrupted:  # every rank stops at step 47; the leader's last checkpoint is step 40
        pass
    resumed_from = []
    model, masks = _model_and_masks()
    result = train_model(model, data, CONFIG, masks=masks, data_seed=3, augment=_seed_dropout(model), group=group,
                         on_progress=resumed_from.append if rank == 0 else None, **leader_only)
    torch.save({"state": model.state_dict(), "result": result and result.to_dict(), "first_progress": resumed_from[:1],
                "files": sorted(path.name for path in job_dir.iterdir())}, out_dir / f"rank{rank}.pt")


def test_two_ranks_train_like_one_process_and_resume_from_the_leaders_checkpoint(tiny_data, tmp_path, one_thread):
    _spawn(_train_two_ranks, tiny_data, tmp_path / "job", tmp_path)
    leader, follower = (torch.load(tmp_path / f"rank{rank}.pt") for rank in (0, 1))

    model, masks = _model_and_masks()
    reference = train_model(model, tiny_data, CONFIG, masks=masks, data_seed=3, augment=_seed_dropout(model))
    for name, value in model.state_dict().items():
        assert torch.allclose(leader["state"][name], value, rtol=0, atol=TRAIN_TOLERANCE), name
        assert torch.equal(follower["state"][name], leader["state"][name]), name  # ranks agree bitwise
    for name, mask in masks.items():
        assert torch.all(leader["state"][name][mask == 0] == 0)
    assert leader["first_progress"] == [40]  # the resumed call started from the leader's checkpoint at step 40
    assert follower["result"] is None and leader["result"]["final_iteration"] == 60
    assert leader["result"]["early_stop_iteration"] == reference.early_stop_iteration
    assert leader["result"]["final_val_loss"] == pytest.approx(reference.final_val_loss, abs=1e-4)
    assert leader["files"] == ["metrics.jsonl"]  # checkpoint removed at the end; nothing else written


def test_a_batch_that_does_not_split_evenly_and_other_tasks_are_refused_by_name():
    check_batch_size(60, 2)
    with pytest.raises(ConfigError, match="train.batch_size 60 does not split across 7"):
        check_batch_size(60, 7)
    import ticketlab
    from ticketlab.lottery.data_parallel import check_ranks_agree
    from ticketlab.training.distributed import DataParallelGroup

    two_ranks = DataParallelGroup(rank=0, world_size=2, device=torch.device("cpu"))  # refused before any collective
    with pytest.raises(ConfigError, match="task 'language' does not train data-parallel under torchrun"):
        check_ranks_agree(two_ranks, ticketlab.preset("lstm_tiny"), "", workers=1, population=None)


# --- whole experiments through the command line -------------------------------------------------------------


def _find_two_ranks(rank, port, root, single_process_root):
    os.environ.update(_rank_environment(rank, 2, port), OMP_NUM_THREADS="1")
    torch.set_num_threads(1)
    status = main([*FIND_ARGS, "--root", str(root)])
    if status != 0:
        raise SystemExit(status)
    # the single-process run directory refuses 2 processes: rank 0's one-line error ends every rank (status 2)
    status = main([*FIND_ARGS, "--root", str(single_process_root)])
    if status != 2:
        raise SystemExit(f"rank {rank}: status {status} for a run directory trained by one process")


def _refuse_inside_a_job(rank, port, root, data, out_dir):
    """Rank 0 refuses after the followers entered a job's collectives (as a resume refused mid-job would); rank 0
    then stays alive, as in a script that catches the error, so only the closed group can free the followers."""
    import ticketlab.training.loop as loop
    from ticketlab.config import ExperimentConfig, ModelConfig
    from ticketlab.errors import TicketlabError
    from ticketlab.api import find_tickets

    os.environ.update(_rank_environment(rank, 2, port))
    torch.set_num_threads(1)
    if rank == 0:
        def refuse(*args, **kwargs):
            raise ConfigError("resume refused for the test")

        loop.training_batches = refuse
    config = ExperimentConfig(model=ModelConfig(name="mlp", hidden=(16,)), train=CONFIG, trials=1,
                              variants=("iterative_reset",))
    try:
        find_tickets(config, root=root, data=data, progress=False, report=False)
        outcome = "finished"
    except TicketlabError as error:
        outcome = f"{type(error).__name__}: {error}"
    (out_dir / f"rank{rank}.txt").write_text(outcome)
    if rank == 0:
        time.sleep(3)  # still running: the follower must not wait for it


def test_a_refusal_inside_a_job_on_rank_0_ends_every_rank_in_one_line(tmp_path, tiny_data):
    started = time.monotonic()
    _spawn(_refuse_inside_a_job, tmp_path / "runs", tiny_data, tmp_path)
    assert time.monotonic() - started < 120
    leader, follower = ((tmp_path / f"rank{rank}.txt").read_text() for rank in (0, 1))
    assert leader == "ConfigError: resume refused for the test"
    # a ConfigError: `ticketlab find` prints it as its one line and exits with status 2
    assert follower == "LeaderStopped: rank 1: lost the connection to rank 0, which stopped (its error says why)"


def _run_dir(root: Path) -> Path:
    (run_dir,) = [path for path in root.iterdir() if path.is_dir()]
    return run_dir


JOBS = ("trial_0/level_00/dense", "trial_0/level_01/iterative_reset")


def _final_weights(run_dir: Path, job: str) -> dict[str, torch.Tensor]:
    return load_file(run_dir / job / "weights_final.safetensors")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The experiment of FIND_ARGS by one process (cli.main) and by 2 ranks (cli.main in each, torchrun's env)."""
    root = tmp_path_factory.mktemp("ddp_runs")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main([*FIND_ARGS, "--root", str(root / "single"), "--population", "1"]) == 0
    finally:
        torch.set_num_threads(threads)
    _spawn(_find_two_ranks, root / "ranks", root / "single")
    return {"single": _run_dir(root / "single"), "ranks": _run_dir(root / "ranks")}


def test_an_experiment_on_two_ranks_matches_one_process(runs):
    single, ranks = runs["single"], runs["ranks"]
    assert single.name == ranks.name  # the same config, the same run directory name
    for job in JOBS:
        single_mask, rank_mask = (load_file(run / job / "mask.safetensors") for run in (single, ranks))
        assert single_mask.keys() == rank_mask.keys()
        for name, mask in single_mask.items():
            assert torch.equal(mask, rank_mask[name]), (job, name)
        reference, trained = _final_weights(single, job), _final_weights(ranks, job)
        for name, value in reference.items():
            assert torch.allclose(trained[name], value, rtol=0, atol=EXPERIMENT_TOLERANCE), (job, name)
    single_rows = (single / "results.csv").read_text().splitlines()
    rank_rows = (ranks / "results.csv").read_text().splitlines()
    assert [row.split(",")[:5] for row in rank_rows] == [row.split(",")[:5] for row in single_rows]
    assert json.loads((ranks / "population.json").read_text()) == {"population": 1, "device": "cpu", "processes": 2}


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return found


def _rank_pid(torchrun_pid: int, rank: int) -> int | None:
    for pid in _children(torchrun_pid):
        try:
            environment = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"RANK={rank}".encode() in environment:
            return pid
    return None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the rank's process through /proc")
def test_killing_one_rank_mid_job_then_rerunning_resumes_to_the_same_weights(runs, tmp_path):
    root = tmp_path / "killed"
    environment = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    first = subprocess.Popen([*launch, "-m", "ticketlab", *FIND_ARGS, "--root", str(root)], env=environment,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    checkpoint, deadline = None, time.monotonic() + 120
    while checkpoint is None and first.poll() is None and time.monotonic() < deadline:
        checkpoint = next(root.glob("*/trial_0/level_00/dense/checkpoint.safetensors"), None) if root.exists() else None
        time.sleep(0.005)
    assert checkpoint is not None, first.communicate()[0].decode()[-2000:]
    follower = _rank_pid(first.pid, 1)
    assert follower is not None
    os.kill(follower, signal.SIGKILL)  # rank 1 dies mid-job; torchrun stops rank 0
    output = first.communicate(timeout=120)[0].decode()
    assert first.returncode != 0, output[-2000:]
    run_dir = _run_dir(root)
    assert not (run_dir / JOBS[-1] / "result.json").exists()

    # the rerun: the installed console script under torchrun, asking for workers it will not use
    executable = Path(sys.executable).with_name("ticketlab")
    rerun = [*launch, "--no-python", str(executable), *FIND_ARGS, "--root", str(root), "--workers", "2"]
    second = subprocess.run(rerun, env=environment, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-2000:]
    assert "under torchrun each job trains data-parallel on all 2 processes" in second.stderr
    assert second.stdout.count("experiment:") == 1  # rank 0 alone prints
    for job in JOBS:
        uninterrupted, resumed = _final_weights(runs["ranks"], job), _final_weights(run_dir, job)
        for name, value in uninterrupted.items():
            assert torch.equal(resumed[name], value), (job, name)
    assert (run_dir / "results.csv").read_text() == (runs["ranks"] / "results.csv").read_text()
