"""The in-process executor: the population plan trained in this process (`ticketlab.lottery.planner.run_graph`),
the reference path every other executor reproduces, and the one that trains when no other applies."""

from __future__ import annotations

from ticketlab.lottery.executors.base import EXECUTORS, FALLBACK, LOCAL, Execution, Executor
from ticketlab.lottery.planner import run_graph


def train_in_process(execution: Execution) -> None:
    """Train the ready jobs, up to the population size at a time, in this process."""
    run_graph(execution.ctx, execution.graph, population=execution.plan.population,
              on_progress=execution.on_progress, on_jobs_start=execution.on_jobs_start,
              on_jobs_done=execution.on_jobs_done)


EXECUTORS.register(FALLBACK, Executor(FALLBACK, LOCAL, applies=lambda execution: True, train=train_in_process))
