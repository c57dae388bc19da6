"""A lottery experiment under torchrun: every job trained data-parallel by all ranks, rank 0 leading.

Rank 0 (the leader) does everything a single process does — it locks the run directory, walks the job graph,
computes masks and starting weights, resumes checkpoints, writes every file — and, before each job it trains,
tells the followers which job it is (its step range and data seed, and its mask as tensors). All ranks then run
`train_model` together; the leader's weights, optimizer state and step reach the followers inside it, so a job
resumed from the leader's checkpoint continues identically on every rank. The followers read and write no file
(a node needs the dataset, not the run directory), so the graph walk is the leader's alone and every rank agrees
on which jobs run and when each ends by construction. When the experiment is done the leader sends its results
rows, so `find_tickets` returns the same result on every rank.

Jobs with their own runner (the early-bird search) train on the leader alone while the followers wait.
"""

from __future__ import annotations

import sys

from ticketlab.config import ExperimentConfig
from ticketlab.errors import ConfigError, TicketlabError
from ticketlab.lottery.keys import JobKey
from ticketlab.lottery.variants import variant_named
from ticketlab.training.distributed import DataParallelGroup, check_batch_size, lost_connection


class LeaderStopped(ConfigError):
    """The leader ended the experiment with a user error; followers end with the same line."""


def check_ranks_agree(group: DataParallelGroup, config: ExperimentConfig, fingerprint: str, workers: int,
                      population: int | None) -> None:
    """Refusals every rank makes alike, before any file is touched: a task that does not train data-parallel, a
    batch that does not split evenly; then ConfigError unless all ranks run the same config (and custom model/data).
    Populations and worker processes are single-process features: under torchrun jobs train one at a time."""
    from ticketlab.tasks import load_task

    if not load_task(config.task).data_parallel:
        raise ConfigError(f"task {config.task!r} does not train data-parallel under torchrun; supported: "
                          f"{', '.join(_data_parallel_tasks())} (run the other tasks without torchrun)")
    check_batch_size(config.train.batch_size, group.world_size)
    if group.is_leader and (workers > 1 or population not in (None, 1)):
        print(f"ticketlab: under torchrun each job trains data-parallel on all {group.world_size} processes, one job "
              "at a time (--workers 1, --population 1)", file=sys.stderr)
    from hashlib import sha256

    group.agree(int(sha256((config.hash() + fingerprint).encode()).hexdigest()[:15], 16), "the config")


def _data_parallel_tasks() -> list[str]:
    """The tasks whose Task says they train data-parallel (tasks that cannot be imported here are left out)."""
    from ticketlab.tasks import TASKS, load_task

    names = []
    for name in TASKS:
        try:
            if load_task(name).data_parallel:
                names.append(name)
        except ImportError:
            continue
    return names


def announce_job(group: DataParallelGroup, start, key) -> None:
    """Leader: tell the followers the job all ranks train next (a `ticketlab.lottery.jobs.JobStart` of `key`)."""
    group.followers_waiting = False
    group.broadcast_json({"op": "train", "start_step": start.start_step, "total_steps": start.total_steps,
                          "data_seed": start.data_seed, "job": [key.trial, key.level, key.variant]})
    group.broadcast_tensors(start.mask)


def job_trained(group: DataParallelGroup) -> None:
    """Leader: the job's collectives are over; the followers wait for the next message."""
    group.followers_waiting = True


def end_experiment(group: DataParallelGroup, rows: list[dict]) -> None:
    """Leader: the experiment is done; the followers return `rows`."""
    group.broadcast_json({"op": "done", "rows": rows})


def stop_followers(group: DataParallelGroup, error: BaseException) -> None:
    """Leader: end the followers with the leader's one-line error. Followers waiting for a message get it and
    raise LeaderStopped; followers inside a job's collectives cannot be told, so the leader leaves the process
    group and they stop on the closed connection (`follow`) instead of waiting for it."""
    text = " ".join(str(error).split()) if isinstance(error, TicketlabError) else (
        f"{type(error).__name__}" + (f": {' '.join(str(error).split())[:200]}" if str(error).strip() else ""))
    try:
        if group.followers_waiting:
            group.broadcast_json({"op": "stop", "error": text})
            return
    except Exception:  # a follower is already gone: nothing left to tell, the leader's own error stands
        pass
    group.abandon()


def follow(ctx, group: DataParallelGroup) -> list[dict]:
    """Follower: train every job the leader announces, as one rank of it, until the leader ends the experiment;
    returns the leader's results rows. LeaderStopped when the leader stopped with an error, or left while a job
    trained (its own error line says why)."""
    try:
        return _follow_jobs(ctx, group)
    except Exception as error:
        if isinstance(error, TicketlabError) or not lost_connection(error):
            raise
        raise LeaderStopped(f"rank {group.rank}: lost the connection to rank 0, which stopped (its error says why)"
                            ) from None


def _follow_jobs(ctx, group: DataParallelGroup) -> list[dict]:
    while True:
        message = group.broadcast_json(None)
        if message["op"] == "done":
            return message["rows"]
        if message["op"] == "stop":
            raise LeaderStopped(f"rank {group.rank}: rank 0 stopped: {message['error']}")
        masks = group.broadcast_tensors(None)
        model = ctx.make_model(0).to(ctx.device)  # its weights come from the leader when training starts
        trial, level, variant = message["job"]
        train = variant_named(variant).train_config(ctx, JobKey(trial, level, variant))
        ctx.task.train(
            model, ctx.data, train, masks=masks, data_seed=message["data_seed"],
            start_step=message["start_step"], total_steps=message["total_steps"],
            augment=ctx.task.per_step_hook(ctx.config, model), group=group,
        )
