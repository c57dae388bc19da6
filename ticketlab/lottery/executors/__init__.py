"""Executors: the ways a run's job graph is trained, behind one interface (`base.Executor`) and chosen by a table.

- `ray` (`--executor ray`): each population of the plan as a Ray task on a cluster.
- `processes` (`--workers N`, a model the plan does not stack): independent jobs, one per worker process.
- `population_processes` (`--workers N` on the CPU): each population split across the worker processes.
- `torchrun` (launched by torchrun): rank 0 leads, every job trains data-parallel on all ranks.
- `in_process` (otherwise): the population plan in this process, the reference path.

A new executor is one module that registers an `Executor` in `EXECUTORS` and is imported below.
"""

from ticketlab.lottery.executors.base import (
    EXECUTORS,
    Execution,
    Executor,
    ExecutorChoice,
    RunPlan,
    check_choice,
    choose_executor,
    executor_choices,
)
from ticketlab.lottery.executors import ray, processes, torchrun, in_process  # noqa: E402,F401  (they register)

__all__ = ["EXECUTORS", "Execution", "Executor", "ExecutorChoice", "RunPlan", "check_choice", "choose_executor",
           "executor_choices"]
