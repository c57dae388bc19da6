"""The torchrun executor: every rank runs `find_tickets`; rank 0 leads the experiment in process, training each
job data-parallel with the other ranks (the protocol is `ticketlab.lottery.data_parallel`), and the followers
train whatever the leader announces.

It is an executor (the leader trains its graph one job at a time, each on all ranks) and a launcher: `launch`
decides, before any file is touched, which part this rank plays.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

from ticketlab.errors import ConfigError
from ticketlab.lottery.executors.base import EXECUTORS, LOCAL, Executor, RunPlan
from ticketlab.lottery.executors.in_process import train_in_process


def launch(plan: RunPlan, lead: Callable[[RunPlan], object], follow: Callable[[RunPlan], object]):
    """Run the experiment of `plan` as this rank of `plan.group`: the leader runs `lead` (one job at a time,
    `--workers 1 --population 1`) and sends its results rows to the followers, which run `follow`. A refusal, a
    crash or Ctrl-C on the leader ends the followers with its one-line error."""
    from ticketlab.lottery import data_parallel  # with torch.distributed: only under torchrun

    group = plan.group
    if plan.executor.name != LOCAL:
        raise ConfigError(f"--executor {plan.executor.name} does not run under torchrun (each job already trains on "
                          "all its processes); use one or the other")
    data_parallel.check_ranks_agree(group, plan.config, plan.fingerprint, plan.workers, plan.population)
    if not group.is_leader:
        return follow(plan)
    try:
        result = lead(dataclasses.replace(plan, device=group.device, workers=1, population=1))
    except BaseException as error:  # a refusal, a crash or Ctrl-C: no rank may wait on for the leader
        data_parallel.stop_followers(group, error)
        raise
    data_parallel.end_experiment(group, result.rows)
    return result


EXECUTORS.register("torchrun", Executor("torchrun", LOCAL, applies=lambda execution: execution.plan.group is not None,
                                        train=train_in_process))
